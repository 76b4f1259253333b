//! Which deliveries an event causes: the policy's `[[notify]]` rules applied to one event and the
//! state after it. Pure, so the store can call it inside the transaction that writes the event
//! and the outbox rows together, and so every routing decision is tested without a daemon.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};

use super::{Recipient, Trigger};
use crate::model::{Change, Event};
use crate::notify::channels::ChannelConfig;
use crate::policy::{Audience, NotifyRule, Policy};
use crate::rules::{State, approvers_for, approvers_now, waiting_stage};

/// One delivery to write to the outbox: who, through which channel, from when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// `<event seq>:<trigger>:<channel>:<recipient>`, the recipient being the email address on an
    /// smtp channel, else the person's name, a fixed address, or `*` for the channel itself.
    /// Stable: the same event, state and policy always give the same keys, and one recipient
    /// hears of one event once per trigger and channel.
    pub key: String,
    pub channel: String,
    pub trigger: Trigger,
    pub to: Recipient,
    /// Not before this moment (`grant_expiring`: the grant's end less the rule's `before`; the
    /// sender skips it if the grant ended first). None: at once.
    pub not_before: Option<DateTime<Utc>>,
}

/// The triggers an event is: most are one, a break-glass grant's start is three (`grant_started`,
/// `break_glass`, and `grant_expiring` for later). A request that needs no approval (automatic,
/// or break-glass) is not `request_created`: nobody has anything to approve, and its grant's start
/// follows at once.
pub fn triggers(change: &Change) -> Vec<Trigger> {
    match change {
        Change::RequestCreated { approvals_needed, break_glass, .. } if *approvals_needed > 0 && !break_glass => {
            vec![Trigger::RequestCreated]
        }
        Change::RequestApproved { .. } => vec![Trigger::RequestApproved],
        Change::RequestDenied { .. } => vec![Trigger::RequestDenied],
        Change::RequestExpired { .. } => vec![Trigger::RequestExpired],
        Change::GrantStarted { break_glass: true, .. } => vec![Trigger::GrantStarted, Trigger::BreakGlass, Trigger::GrantExpiring],
        Change::GrantStarted { .. } => vec![Trigger::GrantStarted, Trigger::GrantExpiring],
        // Its new end is warned of anew; a warning planned for the old end is skipped when due.
        Change::GrantExtended { .. } => vec![Trigger::GrantExpiring],
        Change::GrantExpired { .. } | Change::GrantRevoked { .. } | Change::GrantRelinquished { .. } => vec![Trigger::GrantEnded],
        // A failed notice about a failed notice is not routed again: no loops.
        Change::NoticeFailed { trigger: Trigger::NoticeFailed, .. } => vec![],
        Change::NoticeFailed { .. } => vec![Trigger::NoticeFailed],
        Change::Checkpoint { .. } => vec![Trigger::Checkpoint],
        _ => vec![],
    }
}

/// The request a change to a request is about (not a grant's: its approvals are over).
fn request_asked(change: &Change) -> Option<crate::model::RequestId> {
    match change {
        Change::RequestCreated { request, .. }
        | Change::RequestApproved { request, .. }
        | Change::RequestDenied { request, .. }
        | Change::RequestExpired { request, .. } => Some(*request),
        _ => None,
    }
}

/// An approval that completes a stage of a request still pending: the next stage's approvers
/// now have something to approve, so it is `request_created` for them (and only for them).
fn next_stage_reached(event: &Event, state: &State, policy: &Policy) -> bool {
    let Change::RequestApproved { request, stage: Some(done), .. } = &event.change else { return false };
    let Some(r) = state.requests.get(request).filter(|r| r.state == crate::model::RequestState::Pending) else { return false };
    let Some(task) = policy.tasks.get(&r.task) else { return false };
    waiting_stage(state, policy, task, r).is_some_and(|(k, _)| k as u32 + 1 > *done)
}

/// Every delivery `event` causes under `policy`, given `state` as it is after the event.
pub fn plan(event: &Event, state: &State, policy: &Policy) -> Vec<Planned> {
    let mut triggers = triggers(&event.change);
    let next_stage = next_stage_reached(event, state, policy);
    if next_stage {
        triggers.push(Trigger::RequestCreated);
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for rule in policy.notify.iter().filter(|r| r.applies_to_task(event.change.task())) {
        let Some(channel) = policy.channels.get(&rule.via) else { continue };
        for &trigger in triggers.iter().filter(|t| rule.on.contains(t)) {
            // A stage reached is news to its approvers only, not to a rule's other audiences.
            let approvers_only = next_stage && trigger == Trigger::RequestCreated;
            if approvers_only && !rule.to.contains(&Audience::Approvers) {
                continue;
            }
            let not_before = match (&event.change, trigger, rule.before) {
                (
                    Change::GrantStarted { expires_at, .. } | Change::GrantExtended { expires_at, .. },
                    Trigger::GrantExpiring,
                    Some(before),
                ) => Some((*expires_at - Duration::seconds(before.min(i64::MAX as u64) as i64)).max(event.at)),
                // Approved ahead: its holder hears that it started when it starts.
                (Change::GrantStarted { starts_at: Some(at), .. }, Trigger::GrantStarted, _) if *at > event.at => Some(*at),
                _ => None,
            };
            for (to, who) in recipients(rule, channel, event, state, policy, approvers_only) {
                let key = format!("{}:{}:{}:{who}", event.seq, trigger.as_str(), rule.via);
                if seen.insert(key.clone()) {
                    out.push(Planned { key, channel: rule.via.clone(), trigger, to, not_before });
                }
            }
        }
    }
    out
}

/// The recipients of one rule for one event, each with the name its key uses.
fn recipients(
    rule: &NotifyRule,
    channel: &ChannelConfig,
    event: &Event,
    state: &State,
    policy: &Policy,
    approvers_only: bool,
) -> Vec<(Recipient, String)> {
    if rule.to.is_empty() {
        return vec![(Recipient { name: None, address: String::new() }, "*".to_string())];
    }
    let smtp = matches!(channel, ChannelConfig::Smtp { .. });
    let subject = event.change.subject();
    // People by name and fixed addresses, in the order the rule names them.
    let mut reached: Vec<Result<String, String>> = Vec::new();
    for audience in rule.to.iter().filter(|a| !approvers_only || **a == Audience::Approvers) {
        match audience {
            Audience::Approvers => {
                let task = event.change.task().and_then(|t| policy.tasks.get(t));
                // On a staged task, the approvers of the stage the request waits at.
                let request = request_asked(&event.change)
                    .and_then(|id| state.requests.get(&id))
                    .filter(|r| r.state == crate::model::RequestState::Pending);
                match (task, request, subject) {
                    (Some(task), Some(r), _) => reached.extend(approvers_now(state, policy, task, r).into_iter().map(Ok)),
                    (Some(task), None, Some(requester)) => {
                        reached.extend(approvers_for(state, policy, task, requester).into_iter().map(Ok))
                    }
                    _ => {}
                }
            }
            Audience::Requester => reached.extend(subject.map(|s| Ok(s.to_string()))),
            Audience::Group(g) => reached.extend(policy.groups.get(g).into_iter().flatten().cloned().map(Ok)),
            Audience::Person(name) => reached.push(Ok(name.clone())),
            Audience::Address(address) => reached.push(Err(address.clone())),
        }
    }
    let mut out = Vec::new();
    for entry in reached {
        let name = match entry {
            Err(address) => {
                out.push((Recipient { name: None, address: address.clone() }, address));
                continue;
            }
            Ok(name) if state.is_disabled(&name) => continue,
            Ok(name) => name,
        };
        let email = policy.people.get(&name).and_then(|p| p.email.clone());
        match (smtp, email) {
            // The policy check makes sure everyone an smtp rule reaches has an address; one who
            // has none after all (a task's approvers changed by a reload) is skipped.
            (true, None) => {}
            (true, Some(address)) => out.push((Recipient { name: Some(name), address: address.clone() }, address)),
            (false, email) => out.push((Recipient { name: Some(name.clone()), address: email.unwrap_or_default() }, name)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GrantId, RequestId};
    use crate::notify::fixtures::{History, policy, t0};

    /// (key, address) of each delivery, in order.
    fn keys(planned: &[Planned]) -> Vec<(String, String)> {
        planned.iter().map(|p| (p.key.clone(), p.to.address.clone())).collect()
    }

    fn route(h: &History, event: &Event) -> Vec<Planned> {
        plan(event, &h.state, &policy())
    }

    #[test]
    fn a_new_request_goes_to_its_approvers_but_not_the_requester_once_each() {
        let mut h = History::default();
        let created = h.carol_asks("mail flow to the archive is broken");
        let planned = route(&h, &created);
        // approvers: alice and bob (carol asked, so not her); group:oncall: alice again and dave;
        // person:alice: alice a third time. Each once.
        assert_eq!(
            keys(&planned),
            vec![
                ("1:request_created:mail:alice@example.org".into(), "alice@example.org".into()),
                ("1:request_created:mail:bob@example.org".into(), "bob@example.org".into()),
                ("1:request_created:mail:dave@example.org".into(), "dave@example.org".into()),
            ]
        );
        assert!(planned.iter().all(|p| p.trigger == Trigger::RequestCreated && p.not_before.is_none() && p.channel == "mail"));
        assert_eq!(planned[0].to.name.as_deref(), Some("alice"));
        // The same event, state and policy: the same keys (a retry or a replay writes nothing new).
        assert_eq!(route(&h, &created), planned);
    }

    #[test]
    fn disabled_people_hear_nothing() {
        let mut h = History::default();
        h.add("root", 0, Change::UserDisabled { user: "bob".into(), reason: None });
        h.add("root", 0, Change::UserDisabled { user: "dave".into(), reason: None });
        let created = h.carol_asks("r");
        let to: Vec<String> = route(&h, &created).into_iter().map(|p| p.to.address).collect();
        assert_eq!(to, vec!["alice@example.org"]);
        // A disabled requester is not told of the decision either.
        h.add("root", 0, Change::UserDisabled { user: "carol".into(), reason: None });
        let denied = h.add(
            "alice",
            1,
            Change::RequestDenied {
                request: RequestId(3),
                task: "exchange.journal-rule".into(),
                requester: "carol".into(),
                comment: "no".into(),
            },
        );
        assert_eq!(route(&h, &denied), vec![]);
    }

    #[test]
    fn decisions_and_lapses_go_to_the_requester() {
        let mut h = History::default();
        h.carol_asks("r");
        let request = RequestId(1);
        let task = || "exchange.journal-rule".to_string();
        let requester = || "carol".to_string();
        let approved = h.add(
            "alice",
            1,
            Change::RequestApproved { request, task: task(), requester: requester(), comment: None, signature: None, stage: None },
        );
        let denied = h.add("bob", 2, Change::RequestDenied { request, task: task(), requester: requester(), comment: "freeze".into() });
        let expired = h.add("zsa", 3, Change::RequestExpired { request, task: task(), requester: requester(), deadline: t0() });
        for (event, trigger) in [(approved, "request_approved"), (denied, "request_denied"), (expired, "request_expired")] {
            let planned = route(&h, &event);
            assert_eq!(keys(&planned), vec![(format!("{}:{trigger}:mail:carol@example.org", event.seq), "carol@example.org".into())]);
        }
        // A cancelled request and a dropped approval are nobody's notice.
        let cancelled = h.add("carol", 4, Change::RequestCancelled { request, task: task(), requester: requester(), reason: None });
        assert_eq!(route(&h, &cancelled), vec![]);
    }

    #[test]
    fn a_grant_start_tells_the_holder_and_plans_the_expiring_notice() {
        let mut h = History::default();
        h.carol_asks("r");
        let started = h.grant(1, "exchange.journal-rule", "carol", false);
        let planned = route(&h, &started);
        assert_eq!(
            keys(&planned),
            vec![
                ("2:grant_started:mail:carol@example.org".into(), "carol@example.org".into()),
                ("2:grant_expiring:mail:carol@example.org".into(), "carol@example.org".into()),
            ]
        );
        assert_eq!(planned[0].not_before, None);
        assert_eq!(planned[1].not_before, Some(t0() + chrono::Duration::minutes(50)), "10 minutes before the end, at 10:30");
        // A grant shorter than `before`: the expiring notice goes at once, not before the start.
        let mut short = History::default();
        let started = short.add(
            "alice",
            0,
            Change::GrantStarted {
                starts_at: None,
                grant: GrantId(9),
                request: RequestId(9),
                task: "exchange.journal-rule".into(),
                holder: "carol".into(),
                expires_at: t0() + chrono::Duration::minutes(5),
                approved_by: vec!["alice".into(), "bob".into()],
                break_glass: false,
            },
        );
        let expiring = route(&short, &started).into_iter().find(|p| p.trigger == Trigger::GrantExpiring).unwrap();
        assert_eq!(expiring.not_before, Some(started.at));
    }

    #[test]
    fn break_glass_pages_oncall_a_fixed_address_and_the_chat_channel() {
        let mut h = History::default();
        let started = h.grant(1, "db.shell", "erin", true);
        let planned = route(&h, &started);
        let got: Vec<&str> = planned.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            got,
            vec![
                "1:grant_started:mail:erin@example.org",
                "1:grant_expiring:mail:erin@example.org",
                "1:break_glass:mail:alice@example.org",
                "1:break_glass:mail:dave@example.org",
                "1:break_glass:mail:security@example.org",
                "1:break_glass:chat:*",
            ]
        );
        let chat = planned.last().unwrap();
        assert_eq!(chat.to, Recipient { name: None, address: String::new() });
        let fixed = &planned[4];
        assert_eq!(fixed.to, Recipient { name: None, address: "security@example.org".into() });
    }

    #[test]
    fn requests_that_need_no_approval_are_not_request_created_and_task_filters_hold() {
        let mut h = History::default();
        let glass = h.add(
            "erin",
            0,
            Change::RequestCreated {
                starts_at: None,
                extends: None,
                signed_approvals: false,
                request: RequestId(1),
                task: "db.shell".into(),
                requester: "erin".into(),
                duration_secs: 600,
                reason: Some("db down".into()),
                ticket: None,
                approvals_needed: 0,
                pending_until: t0(),
                break_glass: true,
                params: Default::default(),
            },
        );
        assert_eq!(route(&h, &glass), vec![], "break-glass: its grant start is the notice");
        // A db.shell request that does need approval reaches the chat rule limited to db.shell;
        // the journal-rule request of the other tests does not (their keys have no chat).
        let mut change = glass.change.clone();
        if let Change::RequestCreated { break_glass, approvals_needed, request, .. } = &mut change {
            (*break_glass, *approvals_needed, *request) = (false, 1, RequestId(2));
        }
        let asked = h.add("erin", 1, change);
        let chat: Vec<String> = route(&h, &asked).into_iter().filter(|p| p.channel == "chat").map(|p| p.key).collect();
        assert_eq!(chat, vec!["2:request_created:chat:alice", "2:request_created:chat:dave"]);
    }

    #[test]
    fn every_way_a_grant_ends_is_grant_ended() {
        let mut h = History::default();
        let task = || "exchange.journal-rule".to_string();
        let holder = || "carol".to_string();
        for (id, end) in [
            (1, Change::GrantExpired { grant: GrantId(1), task: task(), holder: holder(), deadline: t0() }),
            (2, Change::GrantRevoked { grant: GrantId(2), task: task(), holder: holder(), reason: "done".into() }),
            (3, Change::GrantRelinquished { grant: GrantId(3), task: task(), holder: holder() }),
        ] {
            h.grant(id, "exchange.journal-rule", "carol", false);
            let ended = h.add("zsa", 2, end);
            let planned = route(&h, &ended);
            assert_eq!(keys(&planned), vec![(format!("{}:grant_ended:mail:carol@example.org", ended.seq), "carol@example.org".into())]);
        }
    }

    #[test]
    fn a_failed_notice_is_routed_but_a_failed_notice_about_one_is_not() {
        let mut h = History::default();
        let failed = |trigger| Change::NoticeFailed {
            notice: "1:request_created:mail:bob@example.org".into(),
            about: 1,
            trigger,
            channel: "mail".into(),
            recipient: "bob@example.org".into(),
            task: Some("exchange.journal-rule".into()),
            person: Some("carol".into()),
            error: "550 no such user".into(),
        };
        let event = h.add("zsa", 5, failed(Trigger::RequestCreated));
        assert_eq!(keys(&route(&h, &event)), vec![("1:notice_failed:chat:*".into(), String::new())]);
        let event = h.add("zsa", 6, failed(Trigger::NoticeFailed));
        assert_eq!(route(&h, &event), vec![], "no loop of failures");
    }

    #[test]
    fn keys_are_unique_across_every_trigger() {
        let mut h = History::default();
        h.carol_asks("r");
        let events = [h.events[0].clone(), h.grant(1, "db.shell", "erin", true)];
        let all: Vec<String> = events.iter().flat_map(|e| route(&h, e)).map(|p| p.key).collect();
        let unique: BTreeSet<&String> = all.iter().collect();
        assert_eq!(unique.len(), all.len(), "{all:?}");
    }

    /// Stage by stage: a new request reaches the first stage's approvers only; the approval that
    /// completes a stage is news to the next stage's (and to no other audience of the rule).
    #[test]
    fn a_staged_request_reaches_each_stage_when_it_is_that_stages_turn() {
        let staged = crate::notify::fixtures::POLICY
            .replace("approvers = [\"approvers\"]\napprovals = 2\nmax_duration = \"4h\"\n", "max_duration = \"4h\"\n[[tasks.stages]]\nname = \"lead\"\napprovers = [\"leads\"]\n[[tasks.stages]]\nname = \"security\"\napprovers = [\"security\"]\n")
            .replace("oncall = [\"dave\", \"alice\"]\n", "oncall = [\"dave\", \"alice\"]\nleads = [\"alice\"]\nsecurity = [\"bob\", \"erin\"]\n");
        let policy = Policy::parse(&staged, "t").unwrap_or_else(|e| panic!("{e}"));
        let mut h = History::default();
        let token = crate::model::TokenId(1);
        h.add(
            "root",
            0,
            Change::TokenIssued { token, user: "alice".into(), sha256: "00".into(), expires_at: None, scope: Default::default() },
        );
        let created = h.carol_asks("r");
        // Stage 1 is alice's; bob and erin (security) hear nothing yet. dave: group:oncall.
        let to: Vec<String> = plan(&created, &h.state, &policy).into_iter().map(|p| p.to.address).collect();
        assert_eq!(to, vec!["alice@example.org", "dave@example.org"]);
        // Alice approves through her token; the daemon plans from `view_after`, which must know
        // the token to count her approval (found by a review: it did not, and stage 2 never heard).
        let change = Change::RequestApproved {
            request: RequestId(1),
            task: "exchange.journal-rule".into(),
            requester: "carol".into(),
            comment: None,
            signature: None,
            stage: Some(1),
        };
        let before = h.state.clone();
        let mut touched = before.touched_by(std::slice::from_ref(&change));
        let approved = Event {
            seq: h.events.len() as u64 + 1,
            at: t0() + Duration::minutes(1),
            actor: "alice".into(),
            auth: Some(crate::model::Auth::Token { token, issued_by: "root".into() }),
            change,
            prev_hash: String::new(),
            hash: String::new(),
        };
        touched.apply(&approved);
        h.state.apply(&approved);
        let view = crate::notify::outbox::view_after(&before, &touched, std::slice::from_ref(&approved));
        let planned = plan(&approved, &view, &policy);
        assert_eq!(
            keys(&planned),
            vec![
                ("3:request_created:mail:bob@example.org".into(), "bob@example.org".into()),
                ("3:request_created:mail:erin@example.org".into(), "erin@example.org".into()),
                ("3:request_approved:mail:carol@example.org".into(), "carol@example.org".into()),
            ]
        );
        let notice = crate::notify::content::render(&planned[0], &approved, &view, &policy);
        assert!(notice.subject.starts_with("R1: carol asks for exchange.journal-rule"), "{}", notice.subject);
        assert!(notice.text.contains("stage 1/2 (lead) done by alice; stage 2/2 (security): 0 of 1"), "{}", notice.text);
        assert!(notice.text.contains("zsa approve R1"), "{}", notice.text);
        // Without stages, an approval is news to the requester only.
        let plain = route(&h, &approved);
        assert!(plain.iter().all(|p| p.trigger == Trigger::RequestApproved), "{:?}", keys(&plain));
    }
}
