//! The notice sections of a policy (issue 12): `[channels.NAME]` (how notices leave),
//! `[people.NAME]` (where a person is reached) and `[[notify]]` rules (which event goes to whom
//! through which channel). Checked here with their places in the file; secrets are named, never
//! read: the channel reads them when it is built.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::{DURATION_HELP, Person, Problems, Task, valid_name};
use crate::model::{duration, text};
use crate::notify::Trigger;
use crate::notify::channels::{ChannelConfig, SecretSource, SmtpTls};

/// Who a `[[notify]]` rule's `to` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// The task's approvers, but never the requester themself, and nobody disabled.
    Approvers,
    /// The person the event is about: the requester of a request, the holder of a grant (the
    /// same person; the policy may write either `requester` or `holder`).
    Requester,
    Group(String),
    Person(String),
    /// A fixed email address (a team's list, a pager gateway's address).
    Address(String),
}

/// One `[[notify]]` rule, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyRule {
    pub on: Vec<Trigger>,
    /// Empty: the channel itself (one post to a chat webhook, one run of a program), for
    /// channels that have one destination; an smtp rule always names someone.
    pub to: Vec<Audience>,
    pub via: String,
    /// For `grant_expiring`: how long before the grant's end the notice goes, in seconds.
    pub before: Option<u64>,
    /// Only events of these tasks (None: every task, and events of no task).
    pub tasks: Option<Vec<String>>,
}

impl NotifyRule {
    pub fn applies_to_task(&self, task: Option<&str>) -> bool {
        match &self.tasks {
            None => true,
            Some(list) => task.is_some_and(|t| list.iter().any(|x| x == t)),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    on: Spanned<toml::Value>,
    to: Option<Spanned<Vec<Spanned<String>>>>,
    via: Spanned<String>,
    before: Option<Spanned<String>>,
    tasks: Option<Vec<Spanned<String>>>,
}

/// The triggers a policy may name, for messages.
fn trigger_names() -> String {
    Trigger::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
}

/// An email address a mail server will take as one recipient: no spaces, no line breaks or
/// other hidden characters, one '@', and the form RFC 5322 allows (the `email_address` crate).
pub fn check_email(address: &str) -> Result<(), String> {
    let shown = text::inert(address);
    if address.chars().any(|c| c.is_whitespace() || text::hidden(c).is_some()) {
        return Err(format!("'{shown}' is not an email address: it holds a space, a line break or another hidden character"));
    }
    if !address.contains('@') {
        return Err(format!("'{shown}' is not an email address: it has no '@'"));
    }
    if address.contains(['<', '>', ',', ';', '"']) || !email_address::EmailAddress::is_valid(address) {
        return Err(format!("'{shown}' is not an email address a mail server would take"));
    }
    Ok(())
}

/// The sender of an smtp channel: an address, or a name and an address (`zsa <zsa@example.org>`,
/// the form the docs show and the channel takes), on one line.
fn check_sender(from: &str) -> Result<(), String> {
    if from.chars().any(|c| text::hidden(c).is_some()) {
        return Err(format!("'{}' holds a line break or another hidden character", text::inert(from)));
    }
    match from.parse::<lettre::message::Mailbox>() {
        Ok(mailbox) => check_email(mailbox.email.as_ref()),
        Err(e) if from.contains('<') => Err(format!("'{}' is not a name and an email address ({e})", text::inert(from))),
        Err(e) => {
            check_email(from)?;
            Err(format!("'{}' is not an email address a mail server would take ({e})", text::inert(from)))
        }
    }
}

fn check_secret(here: &str, field: &str, secret: &SecretSource, span: &Range<usize>, p: &mut Problems) {
    match secret {
        SecretSource::File(path) if !path.is_absolute() => {
            p.at(span.clone(), format!("{here}: {field}: the file '{}' must be an absolute path", text::inert(&path.display().to_string())))
        }
        SecretSource::Env(name)
            if name.is_empty()
                || name.starts_with(|c: char| c.is_ascii_digit())
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            p.at(
                span.clone(),
                format!("{here}: {field}: '{}' is not an environment variable name (letters, digits and '_')", text::inert(name)),
            )
        }
        _ => {}
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn channels(raw: BTreeMap<String, Spanned<ChannelConfig>>, p: &mut Problems) -> BTreeMap<String, ChannelConfig> {
    let mut out = BTreeMap::new();
    for (name, channel) in raw {
        let span = channel.span();
        let here = format!("channel '{}'", text::inert(&name));
        if !valid_name(&name) {
            p.at(span.clone(), format!("{here}: a channel name may hold only letters, digits, '.', '-', '_' and '@'"));
        }
        let channel = channel.into_inner();
        match &channel {
            ChannelConfig::Smtp { host, port, tls, from, username, password } => {
                if host.is_empty() || host.chars().any(|c| c.is_whitespace() || text::hidden(c).is_some()) {
                    p.at(span.clone(), format!("{here}: host '{}' is not a host name", text::inert(host)));
                }
                if *port == Some(0) {
                    p.at(span.clone(), format!("{here}: port 0 is not a port"));
                }
                if *tls == SmtpTls::None && !is_loopback(host) {
                    p.at_with_help(
                        span.clone(),
                        format!("{here}: tls = \"none\" sends mail and passwords in clear text; it is allowed only to a relay on loopback, not '{}'", text::inert(host)),
                        "use tls = \"starttls\" (port 587) or tls = \"tls\" (port 465)",
                    );
                }
                if let Err(e) = check_sender(from) {
                    p.at_with_help(
                        span.clone(),
                        format!("{here}: from: {e}"),
                        "write it as \"zsa <zsa@example.org>\" or \"zsa@example.org\"",
                    );
                }
                match (username, password) {
                    (Some(_), None) => p.at(
                        span.clone(),
                        format!("{here}: username is set without a password = {{ file = \"...\" }} or {{ env = \"...\" }}"),
                    ),
                    (None, Some(_)) => p.at(span.clone(), format!("{here}: password is set without a username")),
                    _ => {}
                }
                if let Some(secret) = password {
                    check_secret(&here, "password", secret, &span, p);
                }
            }
            ChannelConfig::Webhook { url, secret, .. } => {
                check_secret(&here, "url", url, &span, p);
                if let Some(secret) = secret {
                    check_secret(&here, "secret", secret, &span, p);
                }
            }
            ChannelConfig::Exec { program, .. } if !program.is_absolute() => p.at(
                span.clone(),
                format!(
                    "{here}: program must be an absolute path (not '{}'): the daemon never searches PATH",
                    text::inert(&program.display().to_string())
                ),
            ),
            ChannelConfig::File { path } if !path.is_absolute() => {
                p.at(span.clone(), format!("{here}: path must be an absolute path (not '{}')", text::inert(&path.display().to_string())))
            }
            _ => {}
        }
        out.insert(name, channel);
    }
    out
}

/// What the rules' checks need to know of the rest of the policy.
pub(super) struct Known<'a> {
    pub groups: &'a BTreeMap<String, BTreeSet<String>>,
    pub tasks: &'a BTreeMap<String, Task>,
    pub channels: &'a BTreeMap<String, ChannelConfig>,
    pub people: &'a BTreeMap<String, Person>,
}

pub(super) fn rules(raw: Vec<Spanned<RawRule>>, known: &Known, p: &mut Problems) -> Vec<NotifyRule> {
    let mut out = Vec::new();
    for (i, rule) in raw.into_iter().enumerate() {
        let r = rule.into_inner();
        let here = format!("notify rule {}", i + 1);
        let on = triggers(&r.on, &here, p);

        let via = r.via.get_ref().clone();
        let channel = known.channels.get(&via);
        if channel.is_none() {
            let defined: Vec<&str> = known.channels.keys().map(String::as_str).collect();
            p.at_with_help(
                r.via.span(),
                format!("{here}: via names the channel '{}', which [channels] does not define", text::inert(&via)),
                match defined.as_slice() {
                    [] => format!("define it: [channels.{}] with kind = \"smtp\", \"webhook\", \"exec\" or \"file\"", text::inert(&via)),
                    some => format!("name a channel that is defined: {}", some.join(", ")),
                },
            );
        }
        let smtp = matches!(channel, Some(ChannelConfig::Smtp { .. }));

        let expiring = on.contains(&Trigger::GrantExpiring);
        let before = match (&r.before, expiring) {
            (None, true) => {
                p.at_with_help(
                    r.on.span(),
                    format!("{here}: grant_expiring needs before = \"10m\": how long before the end to send it"),
                    DURATION_HELP,
                );
                None
            }
            (Some(b), false) => {
                p.at(b.span(), format!("{here}: before applies only to grant_expiring, which this rule's on does not name"));
                None
            }
            (Some(b), true) => match duration::parse(b.get_ref()) {
                Ok(secs) => Some(secs),
                Err(e) => {
                    p.at_with_help(b.span(), format!("{here}: before: {e}"), DURATION_HELP);
                    None
                }
            },
            (None, false) => None,
        };

        let tasks = r.tasks.as_ref().map(|list| {
            for t in list.iter().filter(|t| !known.tasks.contains_key(t.get_ref())) {
                p.at(t.span(), format!("{here}: tasks names '{}', which is not a task of this policy", text::inert(t.get_ref())));
            }
            list.iter().map(|t| t.get_ref().clone()).collect::<Vec<_>>()
        });
        let concerned: Vec<&Task> = known.tasks.values().filter(|t| tasks.as_ref().is_none_or(|l| l.contains(&t.name))).collect();

        let mut to = Vec::new();
        match &r.to {
            None if smtp => p.at(r.via.span(), format!("{here}: an smtp channel needs to = [...]: whom to mail")),
            Some(list) if list.get_ref().is_empty() => {
                p.at(list.span(), format!("{here}: to is empty; name someone, or leave to out to post to the channel itself"))
            }
            _ => {}
        }
        for entry in r.to.iter().flat_map(|l| l.get_ref()) {
            let Some(audience) = audience(entry, &here, known, p) else { continue };
            if smtp {
                let people = reached(&audience, &concerned, known);
                let missing: Vec<&str> =
                    people.iter().filter(|n| known.people.get(*n).is_none_or(|x| x.email.is_none())).map(|n| n.as_str()).collect();
                if !missing.is_empty() {
                    p.at_with_help(
                        entry.span(),
                        format!(
                            "{here}: '{}' through the smtp channel '{}' reaches {}, who {} no email",
                            text::inert(entry.get_ref()),
                            text::inert(&via),
                            missing.join(", "),
                            if missing.len() == 1 { "has" } else { "have" }
                        ),
                        format!("give each an address: [people.{}] email = \"...\"", missing[0]),
                    );
                }
            }
            if !to.contains(&audience) {
                to.push(audience);
            }
        }
        out.push(NotifyRule { on, to, via, before, tasks });
    }
    out
}

fn triggers(on: &Spanned<toml::Value>, here: &str, p: &mut Problems) -> Vec<Trigger> {
    let names: Vec<&toml::Value> = match on.get_ref() {
        toml::Value::Array(list) => list.iter().collect(),
        one => vec![one],
    };
    let mut out = Vec::new();
    for name in names {
        match name.as_str().and_then(Trigger::parse) {
            Some(t) if !out.contains(&t) => out.push(t),
            Some(_) => {}
            None => p.at_with_help(
                on.span(),
                format!(
                    "{here}: on has {}, which is not a trigger",
                    name.as_str().map_or_else(|| format!("a {}", name.type_str()), |s| format!("'{}'", text::inert(s)))
                ),
                format!("name one or a list of: {}", trigger_names()),
            ),
        }
    }
    if out.is_empty() && matches!(on.get_ref(), toml::Value::Array(l) if l.is_empty()) {
        p.at(on.span(), format!("{here}: on is empty, so the rule would never send anything"));
    }
    out
}

fn audience(entry: &Spanned<String>, here: &str, known: &Known, p: &mut Problems) -> Option<Audience> {
    let value = entry.get_ref();
    let shown = text::inert(value);
    let audience = if value == "approvers" {
        Audience::Approvers
    } else if value == "requester" || value == "holder" {
        Audience::Requester
    } else if let Some(group) = value.strip_prefix("group:") {
        if !known.groups.contains_key(group) {
            p.at(entry.span(), format!("{here}: to names the group '{}', which [groups] does not define", text::inert(group)));
            return None;
        }
        Audience::Group(group.to_string())
    } else if let Some(person) = value.strip_prefix("person:") {
        if !known.people.contains_key(person) {
            p.at_with_help(
                entry.span(),
                format!("{here}: to names the person '{}', whom [people] does not define", text::inert(person)),
                format!("define them: [people.{}] email = \"...\"", text::inert(person)),
            );
            return None;
        }
        Audience::Person(person.to_string())
    } else if value.contains('@') || value.chars().any(char::is_whitespace) {
        if let Err(e) = check_email(value) {
            p.at(entry.span(), format!("{here}: to: {e}"));
            return None;
        }
        Audience::Address(value.clone())
    } else {
        p.at_with_help(
            entry.span(),
            format!("{here}: to has '{shown}', which is not a recipient"),
            "write \"approvers\", \"requester\", \"holder\", \"group:NAME\", \"person:NAME\" or an email address",
        );
        return None;
    };
    Some(audience)
}

/// The people (by name) an audience can reach for events of `tasks`: what an smtp rule needs
/// an address for.
fn reached(audience: &Audience, tasks: &[&Task], known: &Known) -> BTreeSet<String> {
    let members = |groups: &mut dyn Iterator<Item = &String>| -> BTreeSet<String> {
        groups.filter_map(|g| known.groups.get(g)).flatten().cloned().collect()
    };
    match audience {
        Audience::Approvers => members(&mut tasks.iter().flat_map(|t| &t.approvers)),
        Audience::Requester => members(&mut tasks.iter().flat_map(|t| &t.requesters)),
        Audience::Group(g) => known.groups.get(g).cloned().unwrap_or_default(),
        Audience::Person(name) => BTreeSet::from([name.clone()]),
        Audience::Address(_) => BTreeSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use crate::notify::Trigger;
    use crate::notify::channels::{ChannelConfig, SecretSource, WebhookFormat};
    use crate::policy::{Audience, Policy};

    /// Lines 1-11 are the groups and the task; the notice sections follow from line 12.
    const BASE: &str = r#"[groups]
ops = ["carol"]
approvers = ["alice", "bob"]
oncall = ["dave"]
[[tasks]]
name = "t"
requesters = ["ops"]
approval = "manual"
approvers = ["approvers"]
max_duration = "1h"
break_glass = false
"#;

    const NOTICES: &str = r#"[channels.mail]
kind = "smtp"
host = "smtp.example.org"
port = 587
tls = "starttls"
from = "zsa@example.org"
username = "zsa"
password = { file = "/etc/zsa/smtp-password" }
[channels.chat]
kind = "webhook"
url = { env = "ZSA_SLACK_URL" }
format = "slack"
[people.alice]
email = "alice@example.org"
[people.bob]
email = "bob@example.org"
[people.carol]
email = "carol@example.org"
[people.dave]
email = "dave@example.org"
[[notify]]
on = ["request_created"]
to = ["approvers"]
via = "mail"
[[notify]]
on = ["request_approved", "request_denied", "grant_expiring"]
to = ["requester", "holder"]
via = "mail"
before = "10m"
tasks = ["t"]
[[notify]]
on = "break_glass"
to = ["group:oncall", "person:alice", "security@example.org"]
via = "mail"
[[notify]]
on = "notice_failed"
via = "chat"
"#;

    fn good() -> String {
        format!("{BASE}{NOTICES}")
    }

    /// `file:line: message` of the first problem.
    fn error(src: &str) -> String {
        let e = Policy::parse(src, "p.toml").unwrap_err();
        e.to_string().lines().next().unwrap().to_string()
    }

    fn line_of(src: &str, needle: &str) -> usize {
        src.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle} not in the policy")) + 1
    }

    #[test]
    fn channels_people_and_rules_load() {
        let p = Policy::parse(&good(), "p.toml").unwrap();
        assert!(
            matches!(&p.channels["mail"], ChannelConfig::Smtp { password: Some(SecretSource::File(f)), .. } if f.ends_with("smtp-password"))
        );
        assert_eq!(
            p.channels["chat"],
            ChannelConfig::Webhook { url: SecretSource::Env("ZSA_SLACK_URL".into()), format: WebhookFormat::Slack, secret: None }
        );
        assert_eq!(p.people["bob"].email.as_deref(), Some("bob@example.org"));
        assert_eq!(p.notify.len(), 4);
        let decided = &p.notify[1];
        assert_eq!(decided.on, vec![Trigger::RequestApproved, Trigger::RequestDenied, Trigger::GrantExpiring]);
        assert_eq!(decided.to, vec![Audience::Requester], "requester and holder are one person, named once");
        assert_eq!((decided.before, decided.tasks.as_deref()), (Some(600), Some(&["t".to_string()][..])));
        assert_eq!(p.notify[2].on, vec![Trigger::BreakGlass]);
        assert_eq!(
            p.notify[2].to,
            vec![Audience::Group("oncall".into()), Audience::Person("alice".into()), Audience::Address("security@example.org".into())]
        );
        assert!(p.notify[3].to.is_empty(), "no `to`: the chat channel itself");
        // A policy without the sections has none.
        let p = Policy::parse(BASE, "p.toml").unwrap();
        assert!(p.channels.is_empty() && p.people.is_empty() && p.notify.is_empty());
    }

    /// Each mistake is refused with the line it is on (the first problem reported).
    #[test]
    fn notice_mistakes_are_refused_with_their_line() {
        let cases: &[(&str, &str, &str, &str)] = &[
            // (replace, with, the line holding, the message holds)
            ("via = \"chat\"", "via = \"chta\"", "via = \"chta\"", "via names the channel 'chta', which [channels] does not define"),
            (
                "to = [\"group:oncall\"",
                "to = [\"group:oncal\"",
                "group:oncal",
                "to names the group 'oncal', which [groups] does not define",
            ),
            ("\"person:alice\"", "\"person:alise\"", "person:alise", "to names the person 'alise', whom [people] does not define"),
            ("on = \"break_glass\"", "on = \"break_glas\"", "on = \"break_glas\"", "on has 'break_glas', which is not a trigger"),
            ("on = \"break_glass\"", "on = [\"break_glass\", 3]", "on = [\"break_glass\", 3]", "on has a integer, which is not a trigger"),
            ("on = \"break_glass\"", "on = []", "on = []", "on is empty"),
            ("before = \"10m\"", "before = \"soon\"", "before = \"soon\"", "before:"),
            ("on = \"break_glass\"", "on = \"break_glass\"\nbefore = \"5m\"", "before = \"5m\"", "before applies only to grant_expiring"),
            ("tasks = [\"t\"]", "tasks = [\"tt\"]", "tasks = [\"tt\"]", "tasks names 'tt', which is not a task"),
            ("\"security@example.org\"", "\"security example.org\"", "security example.org", "holds a space"),
            (
                "\"security@example.org\"",
                "\"security.example.org\"",
                "security.example.org",
                "to has 'security.example.org', which is not a recipient",
            ),
            ("\"security@example.org\"", "\"sec\\r\\nBcc: x@y@example.org\"", "Bcc", "holds a space, a line break"),
            ("\"security@example.org\"", "\"a@b@example.org\"", "a@b@example.org", "not an email address a mail server would take"),
            (
                "email = \"bob@example.org\"",
                "email = \"bob\"",
                "email = \"bob\"",
                "people.bob.email: 'bob' is not an email address: it has no '@'",
            ),
            // A person routed to the smtp channel without an address.
            ("[people.dave]\nemail = \"dave@example.org\"\n", "[people.dave]\n", "group:oncall", "reaches dave, who has no email"),
            (
                "[people.alice]\nemail = \"alice@example.org\"\n",
                "[people.alice]\n",
                "to = [\"approvers\"]",
                "reaches alice, who has no email",
            ),
            ("[people.carol]\nemail = \"carol@example.org\"\n", "", "to = [\"requester\", \"holder\"]", "reaches carol, who has no email"),
            ("to = [\"approvers\"]\n", "", "via = \"mail\"", "an smtp channel needs to = [...]"),
            ("to = [\"requester\", \"holder\"]", "to = []", "to = []", "to is empty"),
            (
                "on = [\"request_approved\", \"request_denied\", \"grant_expiring\"]\nto = [\"requester\", \"holder\"]\nvia = \"mail\"\nbefore = \"10m\"",
                "on = \"grant_expiring\"\nto = [\"holder\"]\nvia = \"mail\"",
                "on = \"grant_expiring\"",
                "grant_expiring needs before",
            ),
            ("kind = \"webhook\"", "kind = \"pigeon\"", "kind = \"pigeon\"", "unknown variant `pigeon`"),
            ("format = \"slack\"", "format = \"slack\"\nurl2 = 1", "[channels.chat]", "unknown field `url2`"),
            (
                "url = { env = \"ZSA_SLACK_URL\" }",
                "url = \"https://hooks.example.org/secret\"",
                "[channels.chat]",
                "secrets are never written in the policy",
            ),
            ("url = { env = \"ZSA_SLACK_URL\" }", "url = { env = \"A\", file = \"/b\" }", "[channels.chat]", "exactly one place"),
            (
                "url = { env = \"ZSA_SLACK_URL\" }",
                "url = { env = \"ZSA SLACK\" }",
                "[channels.chat]",
                "'ZSA SLACK' is not an environment variable name",
            ),
            (
                "{ file = \"/etc/zsa/smtp-password\" }",
                "{ file = \"smtp-password\" }",
                "[channels.mail]",
                "the file 'smtp-password' must be an absolute path",
            ),
            ("tls = \"starttls\"", "tls = \"none\"", "[channels.mail]", "tls = \"none\" sends mail and passwords in clear text"),
            ("from = \"zsa@example.org\"", "from = \"zsa\"", "[channels.mail]", "from: 'zsa' is not an email address"),
            (
                "from = \"zsa@example.org\"",
                "from = \"zsa <zsa>\"",
                "[channels.mail]",
                "from: 'zsa <zsa>' is not a name and an email address",
            ),
            (
                "from = \"zsa@example.org\"",
                "from = \"zsa\\r\\nBcc: x <zsa@example.org>\"",
                "[channels.mail]",
                "from: 'zsa\\u{d}\\u{a}Bcc: x <zsa@example.org>' holds a line break",
            ),
            ("password = { file = \"/etc/zsa/smtp-password\" }\n", "", "[channels.mail]", "username is set without a password"),
            (
                "[people.bob]\nemail = \"bob@example.org\"",
                "[people.bob]\nemail = \"bob@example.org\"\npager = \"1\"",
                "pager",
                "unknown field `pager`",
            ),
        ];
        let src = good();
        for (from, to, at, expect) in cases {
            assert!(src.contains(from), "{from}");
            let bad = src.replacen(from, to, 1);
            let e = error(&bad);
            let line = line_of(&bad, at);
            assert!(e.starts_with(&format!("p.toml:{line}: ")), "{to}: expected line {line}: {e}");
            assert!(e.contains(expect), "{to}: {e}");
        }
        // A secret written inline is refused without being repeated, in the log line or the report.
        let inline = src.replacen("url = { env = \"ZSA_SLACK_URL\" }", "url = \"https://hooks.example.org/T0/B0/s3cr3t\"", 1);
        let e = Policy::parse(&inline, "p.toml").unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        assert!(!e.problems.iter().any(|p| p.message.contains("s3cr3t") || p.help.as_ref().is_some_and(|h| h.contains("s3cr3t"))));
    }

    #[test]
    fn exec_and_file_channels_need_absolute_paths_and_loopback_relays_may_skip_tls() {
        let exec = format!("{BASE}[channels.pager]\nkind = \"exec\"\nprogram = \"pager-gw\"\nargs = [\"--urgent\"]\n");
        assert!(error(&exec).contains("p.toml:12: channel 'pager': program must be an absolute path"), "{}", error(&exec));
        let file = format!("{BASE}[channels.log]\nkind = \"file\"\npath = \"notices.jsonl\"\n");
        assert!(error(&file).contains("p.toml:12: channel 'log': path must be an absolute path"), "{}", error(&file));
        let ok = format!(
            "{BASE}[channels.pager]\nkind = \"exec\"\nprogram = \"/usr/local/bin/pager-gw\"\n[channels.log]\nkind = \"file\"\npath = \"/var/lib/zsa/notices.jsonl\"\n\
             [channels.relay]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\ntls = \"none\"\nfrom = \"zsa@localhost.localdomain\"\n"
        );
        let p = Policy::parse(&ok, "p.toml").unwrap();
        assert_eq!(p.channels.len(), 3);
        // A name with the address, as docs/NOTICES.md writes it.
        let named = ok.replace("from = \"zsa@localhost.localdomain\"", "from = \"zsa <zsa@localhost.localdomain>\"");
        assert!(named.contains("from = \"zsa <"));
        Policy::parse(&named, "p.toml").unwrap_or_else(|e| panic!("{e}"));
    }

    /// The notice sections documented in the example policy (commented out there) load.
    #[test]
    fn the_documented_example_loads() {
        let example = crate::policy::tests::EXAMPLE;
        let start = example.find("# [channels.").expect("the example documents notices");
        let uncommented: String = example[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{}\n", l.trim_start_matches('#').strip_prefix(' ').unwrap_or("")))
            .collect();
        let p = Policy::parse(&format!("{example}\n{uncommented}"), "policy.toml").unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        assert!(!p.notify.is_empty() && !p.channels.is_empty(), "{uncommented}");
        assert_eq!(p.people["alice"].ssh_keys.len(), 1, "the example lists a key the way a .pub file has it");
    }
}
