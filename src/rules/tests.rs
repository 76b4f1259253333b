//! Every rule and every refusal, against a small policy and a clock the tests move by hand.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::model::wire::NewRequest;
use crate::model::{Actor, Auth, Change, Event, GrantId, GrantState, RequestId, RequestState, SYSTEM_ACTOR, TokenId, TokenScope};
use crate::policy::Policy;

const POLICY: &str = r#"
[settings]
pending_ttl = "1h"
[groups]
admins = ["root"]
approvers = ["alice", "bob", "carol"]
oncall = ["carol", "dave"]
auditors = ["erin"]
other = ["frank", "gina"]
[roles]
admins = ["admins"]
auditors = ["auditors"]
[[tasks]]
name = "journal"
requesters = ["oncall"]
approval = "manual"
approvers = ["approvers"]
max_duration = "4h"
default_duration = "1h"
require_reason = true
ticket_pattern = "INC-[0-9]+"
[[tasks]]
name = "export"
requesters = ["oncall"]
approval = "manual"
approvers = ["approvers"]
approvals = 2
max_duration = "2h"
require_ticket = true
[[tasks]]
name = "restart"
requesters = ["oncall"]
approval = "auto"
max_duration = "15m"
[[tasks]]
name = "glass"
requesters = ["oncall"]
approval = "manual"
approvers = ["approvers"]
max_duration = "1h"
break_glass = true
[[tasks]]
name = "other"
requesters = ["other"]
approval = "manual"
approvers = ["other"]
max_duration = "1h"
"#;

/// A state, a policy and a clock: commands are decided and their events applied, as the daemon does.
struct World {
    state: State,
    policy: Policy,
    now: DateTime<Utc>,
    log: Vec<Event>,
}

impl World {
    fn new() -> Self {
        World {
            state: State::default(),
            policy: Policy::parse(POLICY, "test.toml").unwrap(),
            now: Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap(),
            log: Vec::new(),
        }
    }

    fn run(&mut self, actor: impl Into<Actor>, cmd: Command) -> Result<Vec<Change>, Refusal> {
        let actor = actor.into();
        let changes = decide(&self.state, &self.policy, &actor, &cmd, self.now)?;
        for change in &changes {
            let event = Event {
                seq: self.state.last_seq + 1,
                at: self.now,
                actor: actor.user.clone(),
                auth: Some(actor.auth.clone()),
                change: change.clone(),
                prev_hash: self.state.last_hash.clone(),
                hash: format!("h{}", self.state.last_seq + 1),
            };
            self.state.apply(&event);
            self.log.push(event);
        }
        Ok(changes)
    }

    fn refused(&mut self, actor: impl Into<Actor>, cmd: Command) -> Refusal {
        let before = self.state.clone();
        let r = self.run(actor, cmd).expect_err("expected a refusal");
        assert_eq!(self.state, before, "a refused command changed the state");
        r
    }

    fn ask(&mut self, who: &str, task: &str, secs: Option<u64>, reason: Option<&str>, ticket: Option<&str>) -> Result<RequestId, Refusal> {
        let cmd = Command::Request(NewRequest {
            starts_at: None,
            task: task.into(),
            duration_secs: secs,
            reason: reason.map(Into::into),
            ticket: ticket.map(Into::into),
            params: Default::default(),
        });
        self.run(who, cmd).map(|_| self.state.requests.keys().next_back().copied().unwrap())
    }

    fn approve(&mut self, who: &str, id: RequestId) -> Result<Vec<Change>, Refusal> {
        self.run(who, Command::Approve { request: id, comment: None, signature: None })
    }

    fn expire(&mut self) -> Vec<Change> {
        self.run(SYSTEM_ACTOR, Command::Expire).unwrap()
    }

    fn advance(&mut self, secs: i64) {
        self.now += Duration::seconds(secs);
    }

    fn allowed(&self, user: &str, task: &str) -> bool {
        check_access(&self.state, &self.policy, user, user, task, self.now).unwrap().allowed
    }
}

fn journal(w: &mut World) -> RequestId {
    w.ask("carol", "journal", Some(1800), Some("mail flow"), None).unwrap()
}

#[test]
fn the_whole_life_of_a_manual_request() {
    let mut w = World::new();
    let id = journal(&mut w);
    assert_eq!(w.state.requests[&id].state, RequestState::Pending);
    assert!(!w.allowed("carol", "journal"));

    let e = w.refused("carol", Command::Approve { request: id, comment: None, signature: None });
    assert_eq!(e.code, "own_request");
    assert!(e.message.contains("nobody may approve their own request") && e.message.contains("alice, bob"), "{e}");

    let changes = w.approve("alice", id).unwrap();
    assert!(matches!(changes[1], Change::GrantStarted { .. }));
    let g = id.grant();
    assert_eq!(w.state.grants[&g].expires_at, w.now + Duration::seconds(1800));
    assert_eq!(w.state.grants[&g].approved_by, vec!["alice"]);
    assert!(w.allowed("carol", "journal"));

    w.advance(1799);
    assert!(w.expire().is_empty());
    assert!(w.allowed("carol", "journal"));
    w.advance(1);
    assert!(!w.allowed("carol", "journal"), "the deadline itself is the end, even before the sweep");
    let ended = w.expire();
    assert_eq!(ended.len(), 1);
    let grant = &w.state.grants[&g];
    assert_eq!(grant.state, GrantState::Expired);
    assert_eq!(grant.ended.as_ref().unwrap().at, grant.expires_at, "stamped with its deadline");
}

#[test]
fn expiry_is_stamped_with_the_deadline_even_when_late() {
    let mut w = World::new();
    let id = w.ask("dave", "restart", Some(60), None, None).unwrap();
    w.advance(3600 * 5);
    w.expire();
    let g = &w.state.grants[&id.grant()];
    assert_eq!(g.ended.as_ref().unwrap().at, g.expires_at);
    let r = &w.state.requests[&id];
    assert_eq!(r.state, RequestState::Approved);
}

#[test]
fn refusals_of_a_request_say_why_and_what_would_be_allowed() {
    let mut w = World::new();
    let e = w.refused("carol", Command::Request(NewRequest { task: "nope".into(), ..Default::default() }));
    assert_eq!(e.code, "unknown_task");
    assert!(e.message.contains("there is no task 'nope'") && e.message.contains("export, glass, journal, restart"), "{e}");

    let e = w.ask("frank", "journal", None, Some("x"), None).unwrap_err();
    assert_eq!((e.code, e.kind), ("not_eligible", RefusalKind::Forbidden));
    assert!(e.message.contains("members of oncall") && e.message.contains("tasks you may ask for: other"), "{e}");

    let e = w.ask("erin", "journal", None, Some("x"), None).unwrap_err();
    assert!(e.message.contains("you may ask for no task"), "{e}");

    let e = w.ask("carol", "journal", Some(5 * 3600), Some("x"), None).unwrap_err();
    assert_eq!(e.code, "too_long");
    assert!(e.message.contains("you asked for 5h but 'journal' allows at most 4h; ask for 4h or less"), "{e}");

    let e = w.ask("carol", "journal", Some(0), Some("x"), None).unwrap_err();
    assert_eq!(e.code, "bad_duration");

    let e = w.ask("carol", "journal", None, None, None).unwrap_err();
    assert_eq!(e.code, "missing_field");
    assert!(e.message.contains("'journal' needs a reason: add --reason"), "{e}");
    let e = w.ask("carol", "journal", None, Some("   "), None).unwrap_err();
    assert_eq!(e.code, "missing_field", "a blank reason is no reason");
    // Nor is one that shows nothing: an invisible character, marks alone, a blank glyph.
    for (blank, code, says) in [
        ("\u{200B}", "bad_text", "U+200B"),
        ("\u{3164}", "bad_text", "U+3164"),
        ("\u{061C}", "bad_text", "U+061C"),
        ("\u{0301}\u{0301}", "bad_text", "no visible text"),
        ("\u{2800}", "bad_text", "no visible text"),
        ("\u{2028}", "missing_field", "needs a reason"), // a separator is white space: trimmed away
    ] {
        let e = w.ask("carol", "journal", None, Some(blank), None).unwrap_err();
        assert_eq!(e.code, code, "{blank:?}");
        assert!(e.message.contains(says), "{blank:?}: {e}");
    }
    let e = w.ask("carol", "journal", None, Some("mail\u{2028}flow"), None).unwrap_err();
    assert!(e.message.contains("line or paragraph separator U+2028"), "{e}");
    let e = w.run("bob", Command::Deny { request: RequestId(99), comment: Some("\u{2800}".into()) }).unwrap_err();
    assert_eq!(e.code, "no_such_request");

    let e = w.ask("carol", "export", None, None, None).unwrap_err();
    assert!(e.message.contains("'export' needs a ticket"), "{e}");

    let e = w.ask("carol", "journal", None, Some("x"), Some("JIRA-1")).unwrap_err();
    assert_eq!(e.code, "pattern_mismatch");
    assert!(e.message.contains("does not match the pattern INC-[0-9]+"), "{e}");

    let e = w.ask("carol", "journal", None, Some("a\u{1b}[2Jb"), None).unwrap_err();
    assert_eq!(e.code, "bad_text");
    let e = w.ask("carol", "journal", None, Some(&"x".repeat(1001)), None).unwrap_err();
    assert!(e.message.contains("at most 1000"), "{e}");
    assert!(w.log.is_empty(), "no refusal wrote anything");

    journal(&mut w);
    let e = w.ask("carol", "journal", None, Some("again"), None).unwrap_err();
    assert_eq!(e.code, "already_pending");
    assert!(e.message.contains("zsa cancel R1"), "{e}");
}

#[test]
fn the_default_duration_applies_when_none_is_asked() {
    let mut w = World::new();
    let id = w.ask("carol", "journal", None, Some("r"), Some("INC-7")).unwrap();
    assert_eq!(w.state.requests[&id].duration_secs, 3600);
    assert_eq!(w.state.requests[&id].ticket.as_deref(), Some("INC-7"));
}

#[test]
fn auto_tasks_are_granted_at_once_by_policy() {
    let mut w = World::new();
    let id = w.ask("dave", "restart", None, None, None).unwrap();
    let r = &w.state.requests[&id];
    assert_eq!(r.state, RequestState::Approved);
    let g = &w.state.grants[&id.grant()];
    assert_eq!(g.approved_by, vec![crate::model::POLICY_APPROVER]);
    assert_eq!(g.expires_at, w.now + Duration::minutes(15));
    assert!(w.allowed("dave", "restart"));
}

#[test]
fn two_approvals_from_distinct_approvers() {
    let mut w = World::new();
    let id = w.ask("dave", "export", None, None, Some("INC-1")).unwrap();
    assert_eq!(w.approve("alice", id).unwrap().len(), 1);
    let e = w.refused("alice", Command::Approve { request: id, comment: None, signature: None });
    assert_eq!(e.code, "already_approved");
    assert!(e.message.contains("each approver counts once") && e.message.contains("needs 1 more"), "{e}");
    assert!(!w.allowed("dave", "export"));
    assert_eq!(w.approve("carol", id).unwrap().len(), 2, "carol approves others' requests");
    assert!(w.allowed("dave", "export"));
    assert_eq!(w.state.grants[&id.grant()].approved_by, vec!["alice", "carol"]);
    let e = w.refused("bob", Command::Approve { request: id, comment: None, signature: None });
    assert_eq!(e.code, "not_pending");
    assert!(e.message.contains("R1 is already approved by carol"), "{e}");
}

#[test]
fn one_deny_ends_the_request_and_needs_a_comment() {
    let mut w = World::new();
    let id = w.ask("dave", "export", None, None, Some("INC-1")).unwrap();
    w.approve("alice", id).unwrap();
    let e = w.refused("bob", Command::Deny { request: id, comment: None });
    assert_eq!(e.code, "comment_required");
    assert!(e.message.contains("zsa deny R1 --comment"), "{e}");
    w.run("bob", Command::Deny { request: id, comment: Some("not this week".into()) }).unwrap();
    let r = &w.state.requests[&id];
    assert_eq!((r.state, r.comment.as_deref()), (RequestState::Denied, Some("not this week")));
    assert_eq!(w.refused("carol", Command::Approve { request: id, comment: None, signature: None }).code, "not_pending");
    assert!(!w.allowed("dave", "export"));
}

#[test]
fn only_approvers_of_the_task_decide() {
    let mut w = World::new();
    let id = journal(&mut w);
    // Those who may see the request (admins, auditors) are told who approves it.
    for who in ["erin", "root"] {
        let e = w.refused(who, Command::Approve { request: id, comment: None, signature: None });
        assert_eq!(e.code, "not_approver", "{who}");
        assert!(e.message.contains("its approvers are approvers (alice, bob, carol)"), "{e}");
    }
    // Those who may not see it learn nothing about it: the answer is the one for no request at all.
    let missing = w.refused("alice", Command::Approve { request: RequestId(99), comment: None, signature: None });
    assert_eq!((missing.code, missing.message.as_str()), ("no_such_request", "there is no request R99 that you may see"));
    for who in ["dave", "frank"] {
        for cmd in [
            Command::Approve { request: id, comment: None, signature: None },
            Command::Deny { request: id, comment: Some("no".into()) },
            Command::Cancel { request: id },
        ] {
            let e = w.refused(who, cmd.clone());
            assert_eq!((e.code, e.kind), ("no_such_request", RefusalKind::NotFound), "{who} {cmd:?}");
            assert_eq!(e.message, "there is no request R1 that you may see", "{who} {cmd:?}");
            for secret in ["journal", "carol", "alice", "approvers"] {
                assert!(!e.message.contains(secret), "{who} {cmd:?}: {e}");
            }
        }
    }
}

#[test]
fn pending_requests_expire_after_the_ttl() {
    let mut w = World::new();
    let id = journal(&mut w);
    w.advance(3600);
    let e = w.refused("alice", Command::Approve { request: id, comment: None, signature: None });
    assert_eq!(e.code, "request_expired", "an answer after the deadline is refused even before the sweep");
    let changes = w.expire();
    assert!(matches!(changes[0], Change::RequestExpired { .. }));
    assert_eq!(w.state.requests[&id].state, RequestState::Expired);
    assert_eq!(w.state.requests[&id].decided_at, Some(w.state.requests[&id].pending_until));
    journal(&mut w);
}

#[test]
fn requesters_cancel_their_own_pending_requests() {
    let mut w = World::new();
    let id = journal(&mut w);
    let e = w.refused("alice", Command::Cancel { request: id });
    assert_eq!(e.code, "not_requester");
    assert!(e.message.contains("only the requester (carol) may cancel R1"), "{e}");
    assert_eq!(w.refused("dave", Command::Cancel { request: id }).code, "no_such_request", "dave may not see carol's request");
    w.run("carol", Command::Cancel { request: id }).unwrap();
    assert_eq!(w.state.requests[&id].state, RequestState::Cancelled);
    assert_eq!(w.refused("carol", Command::Cancel { request: id }).code, "not_pending");
    assert_eq!(w.refused("alice", Command::Approve { request: id, comment: None, signature: None }).code, "not_pending");
}

#[test]
fn holders_relinquish_and_approvers_or_admins_revoke() {
    let mut w = World::new();
    let id = w.ask("dave", "restart", None, None, None).unwrap();
    let g = id.grant();
    let e = w.refused("carol", Command::Relinquish { grant: g });
    assert_eq!(e.code, "no_such_grant", "carol may not see dave's grant, so she learns nothing about it");
    assert_eq!(e.message, "there is no grant G1 that you may see");
    let e = w.refused("carol", Command::Revoke { grant: g, reason: Some("x".into()) });
    assert_eq!((e.code, e.message.as_str()), ("no_such_grant", "there is no grant G1 that you may see"));
    let e = w.refused("root", Command::Relinquish { grant: g });
    assert_eq!(e.code, "not_holder", "an admin sees it and is told why");
    let e = w.refused("dave", Command::Revoke { grant: g, reason: Some("x".into()) });
    assert_eq!(e.code, "may_not_revoke", "restart has no approvers and dave is no admin");
    assert!(e.message.contains("zsa relinquish G1"), "{e}");
    w.run("dave", Command::Relinquish { grant: g }).unwrap();
    assert_eq!(w.state.grants[&g].state, GrantState::Relinquished);
    assert!(!w.allowed("dave", "restart"));
    assert_eq!(w.refused("dave", Command::Relinquish { grant: g }).code, "grant_ended");

    let id = journal(&mut w);
    w.approve("bob", id).unwrap();
    let g = id.grant();
    let e = w.refused("bob", Command::Revoke { grant: g, reason: None });
    assert_eq!(e.code, "reason_required");
    assert_eq!(w.refused("erin", Command::Revoke { grant: g, reason: Some("x".into()) }).code, "may_not_revoke", "auditors act on nothing");
    w.run("alice", Command::Revoke { grant: g, reason: Some("done early".into()) }).unwrap();
    let grant = &w.state.grants[&g];
    assert_eq!(grant.state, GrantState::Revoked);
    assert_eq!(grant.ended.as_ref().unwrap().reason.as_deref(), Some("done early"));
    assert!(!w.allowed("carol", "journal"));

    let id = w.ask("carol", "journal", None, Some("again"), None).unwrap();
    w.approve("bob", id).unwrap();
    w.run("root", Command::Revoke { grant: id.grant(), reason: Some("admin says".into()) }).unwrap();
    assert_eq!(w.refused("root", Command::Revoke { grant: GrantId(42), reason: Some("x".into()) }).code, "no_such_grant");
}

#[test]
fn revoking_after_the_deadline_is_refused_even_before_the_sweep() {
    let mut w = World::new();
    let id = w.ask("dave", "restart", Some(60), None, None).unwrap();
    w.advance(60);
    let e = w.refused("root", Command::Revoke { grant: id.grant(), reason: Some("x".into()) });
    assert_eq!(e.code, "grant_ended");
    assert!(e.message.contains("expired"), "{e}");
}

#[test]
fn break_glass_is_active_at_once_and_waits_for_review() {
    let mut w = World::new();
    let id = w.ask("dave", "glass", Some(600), None, None).unwrap();
    let g = id.grant();
    assert!(w.allowed("dave", "glass"));
    assert!(w.state.grants[&g].needs_review());
    assert!(w.state.grants[&g].approved_by.is_empty());
    assert_eq!(w.refused("dave", Command::Review { grant: g, comment: None }).code, "not_approver");
    assert_eq!(w.refused("erin", Command::Review { grant: g, comment: None }).code, "not_approver");
    w.advance(700);
    w.expire();
    w.run("alice", Command::Review { grant: g, comment: Some("looked fine".into()) }).unwrap();
    let grant = &w.state.grants[&g];
    assert!(!grant.needs_review());
    assert_eq!(grant.review.as_ref().unwrap().by, "alice");
    assert_eq!(w.refused("bob", Command::Review { grant: g, comment: None }).code, "already_reviewed");

    let id = w.ask("carol", "glass", Some(600), None, None).unwrap();
    let e = w.refused("carol", Command::Review { grant: id.grant(), comment: None });
    assert_eq!(e.code, "own_grant");
    let plain = w.ask("dave", "restart", None, None, None).unwrap();
    assert_eq!(w.refused("root", Command::Review { grant: plain.grant(), comment: None }).code, "not_break_glass");
    assert_eq!(w.refused("alice", Command::Review { grant: plain.grant(), comment: None }).code, "no_such_grant", "not hers to see");
}

#[test]
fn disabling_a_user_ends_everything_of_theirs_at_once() {
    let mut w = World::new();
    let pending = journal(&mut w);
    let active = w.ask("carol", "restart", None, None, None).unwrap();
    let others = w.ask("dave", "restart", None, None, None).unwrap();
    assert_eq!(w.refused("alice", Command::DisableUser { user: "carol".into(), reason: None }).code, "admins_only");
    assert_eq!(w.refused("root", Command::DisableUser { user: "root".into(), reason: None }).code, "disable_self");
    w.run("root", Command::DisableUser { user: "carol".into(), reason: Some("left the team".into()) }).unwrap();
    assert_eq!(w.state.requests[&pending].state, RequestState::Cancelled);
    assert_eq!(w.state.grants[&active.grant()].state, GrantState::Revoked);
    assert_eq!(w.state.grants[&others.grant()].state, GrantState::Active);
    assert!(!w.allowed("carol", "restart"));

    let e = w.ask("carol", "restart", None, None, None).unwrap_err();
    assert_eq!(e.code, "user_disabled");
    assert!(e.message.contains("an admin can enable it again"), "{e}");
    let id = w.ask("dave", "journal", None, Some("r"), None).unwrap();
    assert_eq!(w.refused("carol", Command::Approve { request: id, comment: None, signature: None }).code, "user_disabled");
    assert_eq!(w.refused("root", Command::DisableUser { user: "carol".into(), reason: None }).code, "already_disabled");

    w.run("root", Command::EnableUser { user: "carol".into() }).unwrap();
    w.approve("carol", id).unwrap();
    assert_eq!(w.refused("root", Command::EnableUser { user: "carol".into() }).code, "not_disabled");
}

#[test]
fn tokens_are_for_known_users_and_issued_by_admins() {
    let mut w = World::new();
    let issue = |user: &str| Command::issue_token(user, format!("hash-of-{user}"));
    assert_eq!(w.refused("alice", issue("carol")).code, "admins_only");
    assert_eq!(w.refused("root", issue("mallory")).code, "unknown_user");
    assert_eq!(w.refused("root", issue("bad name")).code, "bad_user_name");
    w.run("root", issue("carol")).unwrap();
    let t = w.state.token_user("hash-of-carol").unwrap().clone();
    assert_eq!(t.user, "carol");
    w.run("root", Command::RevokeToken { token: t.id }).unwrap();
    assert!(w.state.token_user("hash-of-carol").is_none());
    assert_eq!(w.refused("root", Command::RevokeToken { token: t.id }).code, "token_revoked");
}

#[test]
fn a_token_lives_its_ttl_at_most_the_policys_maximum_and_never_only_where_allowed() {
    let mut w = World::new();
    let issue =
        |n: u32, ttl: TokenTtl, scope: TokenScope| Command::IssueToken { user: "carol".into(), sha256: format!("h{n}"), ttl, scope };
    let expiry = |w: &World| match w.log.last().map(|e| &e.change) {
        Some(Change::TokenIssued { expires_at, scope, .. }) => (*expires_at, *scope),
        other => panic!("{other:?}"),
    };
    // The policy's default (90 days), and every scope unless narrowed.
    w.run("root", issue(1, TokenTtl::PolicyDefault, TokenScope::All)).unwrap();
    assert_eq!(expiry(&w), (Some(w.now + Duration::days(90)), TokenScope::All));
    w.run("root", issue(2, TokenTtl::Secs(30 * 86_400), TokenScope::Check)).unwrap();
    assert_eq!(expiry(&w), (Some(w.now + Duration::days(30)), TokenScope::Check));
    assert_eq!(w.state.token_user("h2").map(|t| (t.expires_at, t.scope)), Some((Some(w.now + Duration::days(30)), TokenScope::Check)));
    // Past the maximum (a year unless set), or never, is refused, saying the limit.
    let r = w.refused("root", issue(3, TokenTtl::Secs(400 * 86_400), TokenScope::All));
    assert_eq!(r.code, "ttl_too_long");
    assert!(r.message.contains("at most 365d") && r.message.contains("--ttl 365d or less"), "{}", r.message);
    let r = w.refused("root", issue(3, TokenTtl::Never, TokenScope::All));
    assert!(
        r.message.contains("does not allow tokens that never expire") && r.message.contains("token_max_ttl = \"never\""),
        "{}",
        r.message
    );
    assert_eq!(w.refused("root", issue(3, TokenTtl::Secs(0), TokenScope::All)).code, "bad_ttl");
    // A policy without a maximum allows tokens that never expire.
    w.policy = Policy::parse(&POLICY.replace("pending_ttl = \"1h\"", "pending_ttl = \"1h\"\ntoken_max_ttl = \"never\""), "t.toml").unwrap();
    w.run("root", issue(4, TokenTtl::Never, TokenScope::All)).unwrap();
    assert_eq!(expiry(&w), (None, TokenScope::All));
    w.run("root", issue(5, TokenTtl::Secs(400 * 86_400), TokenScope::All)).unwrap();
    assert_eq!(expiry(&w).0, Some(w.now + Duration::days(400)));
    assert!(w.state.tokens.values().find(|t| t.sha256 == "h1").unwrap().expired_at(w.now + Duration::days(90)));
    assert!(!w.state.tokens.values().find(|t| t.sha256 == "h1").unwrap().expired_at(w.now + Duration::days(90) - Duration::seconds(1)));
}

#[test]
fn only_the_daemon_records_a_throttled_source() {
    let mut w = World::new();
    let note = Command::NoteAuthThrottled { source: "uid 1000".into(), failures: 10, window_secs: 60, until: w.now };
    assert_eq!(w.refused("root", note.clone()).code, "daemon_only");
    let changes = w.run(SYSTEM_ACTOR, note).unwrap();
    assert!(matches!(&changes[..], [Change::AuthThrottled { failures: 10, .. }]), "{changes:?}");
    // Only those who see everything see it.
    let e = w.log.last().unwrap().clone();
    assert!(event_visible(&w.policy, "erin", &e) && event_visible(&w.policy, "root", &e));
    assert!(!event_visible(&w.policy, "carol", &e));
}

#[test]
fn only_the_daemon_expires_and_only_admins_reload() {
    let mut w = World::new();
    assert_eq!(w.refused("root", Command::Expire).code, "daemon_only");
    assert_eq!(w.refused("alice", Command::LoadPolicy).code, "admins_only");
    w.run("root", Command::LoadPolicy).unwrap();
    let loaded = w.log.last().map(|e| e.change.clone());
    assert!(matches!(loaded, Some(Change::PolicyLoaded { sha256, .. }) if sha256 == w.policy.sha256));
}

#[test]
fn check_of_someone_else_needs_a_role() {
    let mut w = World::new();
    w.ask("dave", "restart", None, None, None).unwrap();
    let e = check_access(&w.state, &w.policy, "carol", "dave", "restart", w.now).unwrap_err();
    assert_eq!(e.code, "may_not_check");
    assert!(check_access(&w.state, &w.policy, "erin", "dave", "restart", w.now).unwrap().allowed);
    let a = check_access(&w.state, &w.policy, "dave", "dave", "journal", w.now).unwrap();
    assert!(!a.allowed && a.message.contains("zsa request journal"), "{}", a.message);
    let a = check_access(&w.state, &w.policy, "dave", "dave", "ghost", w.now).unwrap();
    assert!(!a.allowed && a.message.contains("no task 'ghost'"));
}

#[test]
fn visibility_follows_roles() {
    let mut w = World::new();
    let id = journal(&mut w);
    let other = w.ask("frank", "other", None, None, None).unwrap();
    let r = w.state.requests[&id].clone();
    let o = w.state.requests[&other].clone();
    assert!(request_visible(&w.policy, "carol", &r));
    assert!(request_visible(&w.policy, "alice", &r));
    assert!(request_visible(&w.policy, "erin", &r));
    assert!(!request_visible(&w.policy, "dave", &r));
    assert!(!request_visible(&w.policy, "alice", &o));
    let created = &w.log[0];
    assert!(event_visible(&w.policy, "alice", created));
    assert!(!event_visible(&w.policy, "dave", created));
}

#[test]
fn replaying_the_log_rebuilds_the_same_state() {
    let mut w = World::new();
    let a = journal(&mut w);
    w.approve("alice", a).unwrap();
    let b = w.ask("dave", "export", None, None, Some("INC-2")).unwrap();
    w.approve("bob", b).unwrap();
    w.ask("dave", "glass", None, None, None).unwrap();
    w.run("root", Command::DisableUser { user: "dave".into(), reason: None }).unwrap();
    w.advance(7200);
    w.expire();
    let mut rebuilt = State::default();
    for e in &w.log {
        rebuilt.apply(e);
    }
    assert_eq!(rebuilt, w.state);
}

#[test]
fn touched_by_copies_exactly_what_changes_will_need() {
    let mut w = World::new();
    let id = journal(&mut w);
    let changes =
        decide(&w.state, &w.policy, &Actor::from("alice"), &Command::Approve { request: id, comment: None, signature: None }, w.now)
            .unwrap();
    let touched = w.state.touched_by(&changes);
    assert_eq!(touched.requests.len(), 1);
    assert!(touched.grants.is_empty());
    assert_eq!(touched.last_seq, w.state.last_seq);
}

fn via_token(user: &str, token: u64, issued_by: &str) -> Actor {
    Actor::new(user, Auth::Token { token: TokenId(token), issued_by: issued_by.into() })
}

fn export(w: &mut World) -> RequestId {
    w.ask("dave", "export", None, None, Some("INC-7")).unwrap()
}

#[test]
fn an_approval_through_a_token_the_requester_issued_does_not_count() {
    let mut w = World::new();
    let id = export(&mut w);
    for approver in ["alice", "bob"] {
        let r = w.refused(via_token(approver, 1, "dave"), Command::Approve { request: id, comment: None, signature: None });
        assert_eq!(r.code, "approval_not_accepted", "{r:?}");
        assert!(r.message.contains("token T1") && r.message.contains("through a token they issued does not count"), "{}", r.message);
    }
    // A token someone else issued, and a person's own login, count.
    w.run("root", Command::issue_token("alice", "a")).unwrap();
    w.run("root", Command::issue_token("alice", "b")).unwrap();
    w.run(via_token("alice", 2, "root"), Command::Approve { request: id, comment: None, signature: None }).unwrap();
    let changes =
        w.run(Actor::new("bob", Auth::Peer { uid: 1002 }), Command::Approve { request: id, comment: None, signature: None }).unwrap();
    let Some(Change::GrantStarted { approved_by, .. }) = changes.last() else { panic!("no grant: {changes:?}") };
    assert_eq!(approved_by, &["alice", "bob"]);
    // Each approval records how it was given.
    let approvals = &w.state.requests[&id].approvals;
    assert_eq!(approvals[0].auth, Some(Auth::Token { token: TokenId(2), issued_by: "root".into() }));
    assert_eq!(approvals[1].auth, Some(Auth::Peer { uid: 1002 }));
    assert!(w.log.iter().all(|e| e.auth.is_some()), "every event records how its actor authenticated");
}

#[test]
fn a_task_may_accept_approvals_only_from_a_persons_own_login() {
    let mut w = World::new();
    w.policy =
        Policy::parse(&POLICY.replace("require_ticket = true", "require_ticket = true\napprove_via = [\"peer\"]"), "t.toml").unwrap();
    let id = export(&mut w);
    let r = w.refused(via_token("alice", 2, "root"), Command::Approve { request: id, comment: None, signature: None });
    assert_eq!(r.code, "approval_not_accepted");
    assert!(r.message.contains("approve_via") && r.message.contains("own login"), "{}", r.message);
    w.run(Actor::new("alice", Auth::Peer { uid: 1001 }), Command::Approve { request: id, comment: None, signature: None }).unwrap();
    // Bad values are policy errors with their line.
    let bad = Policy::parse(&POLICY.replace("require_ticket = true", "require_ticket = true\napprove_via = [\"sms\"]"), "t.toml");
    let e = bad.expect_err("sms is no way to approve").to_string();
    assert!(e.contains("t.toml:") && e.contains("approve_via has 'sms'"), "{e}");
    let empty = Policy::parse(&POLICY.replace("require_ticket = true", "require_ticket = true\napprove_via = []"), "t.toml");
    assert!(empty.expect_err("empty").to_string().contains("approve_via is empty"));
}

#[test]
fn a_disabled_approvers_earlier_approval_is_dropped_and_the_request_waits() {
    let mut w = World::new();
    let id = export(&mut w);
    w.approve("alice", id).unwrap();
    let changes = w.run("root", Command::DisableUser { user: "alice".into(), reason: None }).unwrap();
    assert!(
        changes.iter().any(|c| matches!(c, Change::ApprovalDropped { request, approver, .. } if *request == id && approver == "alice")),
        "{changes:?}"
    );
    assert!(w.state.requests[&id].approvals.is_empty());
    // bob's approval alone does not make a grant; carol's (another approver) does, without alice.
    let changes = w.approve("bob", id).unwrap();
    assert!(!changes.iter().any(|c| matches!(c, Change::GrantStarted { .. })), "{changes:?}");
    let changes = w.approve("carol", id).unwrap();
    let Some(Change::GrantStarted { approved_by, .. }) = changes.last() else { panic!("no grant: {changes:?}") };
    assert_eq!(approved_by, &["bob", "carol"]);
}

/// The test policy with alice no longer among the approvers.
fn policy_without_alice() -> Policy {
    Policy::parse(&POLICY.replace(r#"approvers = ["alice", "bob", "carol"]"#, r#"approvers = ["bob", "carol", "zoe"]"#), "t.toml").unwrap()
}

#[test]
fn approvals_that_no_longer_hold_are_dropped_when_the_grant_would_be_made() {
    let mut w = World::new();
    let id = export(&mut w);
    w.approve("alice", id).unwrap();
    // alice leaves the approvers in a policy that is put in force without a recorded load
    // (as if the reload's drops were lost): the grant-time check still catches her approval.
    w.policy = policy_without_alice();
    let changes = w.approve("bob", id).unwrap();
    assert!(
        matches!(&changes[0], Change::ApprovalDropped { approver, why, .. } if approver == "alice" && why.contains("no longer an approver")),
        "{changes:?}"
    );
    assert!(!changes.iter().any(|c| matches!(c, Change::GrantStarted { .. })), "a stale approval made a grant: {changes:?}");
    assert_eq!(w.state.requests[&id].approvals.len(), 1);
    assert_eq!(w.state.requests[&id].state, RequestState::Pending);
}

#[test]
fn a_policy_load_and_a_token_revocation_drop_the_approvals_they_invalidate() {
    let mut w = World::new();
    let id = export(&mut w);
    w.approve("alice", id).unwrap();
    w.policy = policy_without_alice();
    let changes = w.run(SYSTEM_ACTOR, Command::LoadPolicy).unwrap();
    assert!(matches!(&changes[1], Change::ApprovalDropped { approver, .. } if approver == "alice"), "{changes:?}");

    let mut w = World::new();
    let token = w.state.next_token_id();
    w.run("root", Command::issue_token("alice", "x")).unwrap();
    let id = export(&mut w);
    w.run(via_token("alice", token.0, "root"), Command::Approve { request: id, comment: None, signature: None }).unwrap();
    let changes = w.run("root", Command::RevokeToken { token }).unwrap();
    assert!(
        matches!(&changes[1], Change::ApprovalDropped { approver, why, .. } if approver == "alice" && why.contains("no longer valid")),
        "{changes:?}"
    );
    let changes = w.approve("bob", id).unwrap();
    assert!(!changes.iter().any(|c| matches!(c, Change::GrantStarted { .. })), "{changes:?}");
}

#[test]
fn a_task_runs_at_most_max_concurrent_runs_at_once_whoever_starts_them() {
    let mut w = World::new();
    let run_task =
        "\n[[tasks]]\nname = \"sh\"\nrequesters = [\"oncall\"]\napproval = \"auto\"\nmax_duration = \"1h\"\nrun = [\"/bin/true\"]\n";
    w.policy = Policy::parse(&format!("{POLICY}{run_task}"), "test.toml").unwrap();
    w.ask("dave", "sh", None, None, None).unwrap();
    w.ask("carol", "sh", None, None, None).unwrap();
    let start = || Command::StartRun { task: "sh".into(), params: Default::default(), run_as: "root".into(), daemon: None };
    w.run("dave", start()).unwrap();
    let r = w.refused("dave", start());
    assert_eq!(r.code, "too_many_runs");
    assert!(r.message.contains("'sh' allows 1 run(s) at a time and this one is still running: X1 (dave)"), "{}", r.message);
    // carol may not see dave's run: she is told how many are going, not which or whose.
    let r = w.refused("carol", start());
    assert_eq!(r.code, "too_many_runs");
    assert!(r.message.contains("'sh' allows 1 run(s) at a time and 1 run is still running;"), "{}", r.message);
    assert!(!r.message.contains("X1") && !r.message.contains("dave"), "{}", r.message);
    let end = Command::EndRun {
        run: "X1".parse().unwrap(),
        outcome: crate::model::RunOutcome::Exited,
        exit_code: Some(0),
        transcript_bytes: 0,
        transcript_sha256: String::new(),
        transcript_cap: 0,
        truncated: false,
    };
    w.run(SYSTEM_ACTOR, end).unwrap();
    w.run("carol", start()).expect("the next run may start once the first has ended");
}

/// Another daemon abandons only the runs it saw going when it judged their owner dead: decided
/// again after a race, it never reaches a run the owner started since.
#[test]
fn abandoning_a_daemons_runs_reaches_only_the_runs_named() {
    let mut w = World::new();
    let run_task = "\n[[tasks]]\nname = \"sh\"\nrequesters = [\"oncall\"]\napproval = \"auto\"\nmax_duration = \"1h\"\nmax_concurrent_runs = 2\nrun = [\"/bin/true\"]\n";
    w.policy = Policy::parse(&format!("{POLICY}{run_task}"), "test.toml").unwrap();
    w.ask("dave", "sh", None, None, None).unwrap();
    let start = || Command::StartRun { task: "sh".into(), params: Default::default(), run_as: "root".into(), daemon: Some("a".into()) };
    w.run("dave", start()).unwrap();
    let seen: std::collections::BTreeSet<_> = w.state.running.iter().copied().collect();
    w.run("dave", start()).unwrap();
    let changes = w.run(SYSTEM_ACTOR, Command::AbandonRuns { daemon: Some("a".into()), only: Some(seen.clone()) }).unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(matches!(&changes[0], Change::RunEnded { run, .. } if seen.contains(run)), "{changes:?}");
    assert_eq!(w.state.running.len(), 1, "the run started since is still going");
    let r = w.refused("dave", Command::AbandonRuns { daemon: Some("a".into()), only: None });
    assert_eq!(r.code, "daemon_only");
}

#[test]
fn a_break_glass_review_through_a_token_the_holder_issued_does_not_count() {
    let mut w = World::new();
    w.ask("dave", "glass", Some(600), Some("db down"), None).unwrap();
    let grant = *w.state.grants.keys().next_back().unwrap();
    let r = w.refused(via_token("alice", 1, "dave"), Command::Review { grant, comment: None });
    assert_eq!(r.code, "review_not_accepted");
    assert!(r.message.contains("zsa review G1"), "{}", r.message);
    w.run(Actor::new("alice", Auth::Peer { uid: 1001 }), Command::Review { grant, comment: None }).unwrap();
}

#[test]
fn a_token_cannot_issue_tokens() {
    let mut w = World::new();
    let r = w.refused(via_token("root", 1, "root"), Command::issue_token("alice", "x"));
    assert_eq!(r.code, "token_cannot_issue");
    assert!(r.message.contains("own login"), "{}", r.message);
    w.run(Actor::new("root", Auth::Peer { uid: 0 }), Command::issue_token("alice", "x")).unwrap();
}

/// Every (viewer, row, action) of a world with rows in every condition: what `permits` lists
/// for the row is exactly what attempting the action does (given a comment or reason where one is
/// needed), refusal for refusal; and the expected answers for each role are what they should be.
#[test]
fn the_listed_actions_are_what_the_attempt_does() {
    use crate::model::wire::RowAction;
    let mut w = World::new();
    // Before the clock moves on: a request nobody answered and a grant that ran out, both still
    // waiting for the sweep.
    let lapsed = w.ask("frank", "other", None, None, None).unwrap();
    let ran_out = w.ask("carol", "restart", Some(600), None, None).unwrap().grant();
    w.advance(3601);
    let pending = w.ask("dave", "journal", Some(1800), Some("mail flow"), None).unwrap();
    let own = w.ask("carol", "journal", Some(1800), Some("mine"), None).unwrap();
    let half = w.ask("dave", "export", None, None, Some("INC-7")).unwrap();
    w.approve("alice", half).unwrap();
    let granted = w.ask("carol", "export", None, None, Some("INC-8")).unwrap();
    w.approve("alice", granted).unwrap();
    w.approve("bob", granted).unwrap();
    let denied = w.ask("frank", "other", None, None, None).unwrap();
    w.run("gina", Command::Deny { request: denied, comment: Some("no".into()) }).unwrap();
    let glass = w.ask("dave", "glass", None, None, None).unwrap().grant();
    let given_up = w.ask("dave", "restart", None, None, None).unwrap().grant();
    w.run("dave", Command::Relinquish { grant: given_up }).unwrap();
    w.run("root", Command::DisableUser { user: "bob".into(), reason: None }).unwrap();

    let viewers: Vec<Actor> = ["dave", "carol", "alice", "bob", "root", "erin", "frank", "gina"]
        .into_iter()
        .map(Actor::from)
        .chain([via_token("alice", 1, "root"), via_token("alice", 2, "dave")])
        .collect();
    let attempt = |action: RowAction, row: Row<'_>| match (action, row) {
        (RowAction::Approve, Row::Request(r)) => Command::Approve { request: r.id, comment: Some("ok".into()), signature: None },
        (RowAction::Deny, Row::Request(r)) => Command::Deny { request: r.id, comment: Some("no".into()) },
        (RowAction::Cancel, Row::Request(r)) => Command::Cancel { request: r.id },
        (RowAction::Revoke, Row::Grant(g)) => Command::Revoke { grant: g.id, reason: Some("done".into()) },
        (RowAction::Relinquish, Row::Grant(g)) => Command::Relinquish { grant: g.id },
        (RowAction::Review, Row::Grant(g)) => Command::Review { grant: g.id, comment: None },
        (RowAction::Extend, Row::Grant(g)) => Command::Extend { grant: g.id, by_secs: 60, reason: Some("more".into()) },
        _ => unreachable!("only the actions of a row's kind are listed"),
    };
    let mut answers = std::collections::BTreeMap::new();
    for who in &viewers {
        let rows = w.state.requests.values().map(Row::Request).chain(w.state.grants.values().map(Row::Grant));
        for row in rows {
            let (listed, id) = match row {
                Row::Request(r) => (request_actions(&w.state, &w.policy, who, r, w.now), r.id.to_string()),
                Row::Grant(g) => (grant_actions(&w.state, &w.policy, who, g, w.now), g.id.to_string()),
            };
            for view in &listed.0 {
                let tried = decide(&w.state, &w.policy, who, &attempt(view.action, row), w.now);
                let listed_answer = permits(&w.state, &w.policy, who, view.action, row, w.now);
                assert_eq!(tried.clone().map(drop), listed_answer, "{} {} {id}", who.user, view.action.as_str());
                assert_eq!(view.allowed, tried.is_ok());
                assert_eq!(view.code.as_deref(), tried.as_ref().err().map(|r| r.code));
                assert_eq!(view.why.as_deref(), tried.as_ref().err().map(|r| r.message.as_str()));
                let via = match &who.auth {
                    Auth::Token { issued_by, .. } => format!(" (token of {issued_by})"),
                    _ => String::new(),
                };
                let label = format!("{}{via} {} {id}", who.user, view.action.as_str());
                answers.insert(label, view.code.clone().unwrap_or_else(|| "allowed".into()));
            }
        }
    }
    let answer = |who: &str, action: &str, id: String| answers[&format!("{who} {action} {id}")].as_str();
    // The requester, on his pending request and on others'.
    assert_eq!(answer("dave", "cancel", pending.to_string()), "allowed");
    assert_eq!(answer("dave", "approve", pending.to_string()), "not_approver");
    assert_eq!(answer("dave", "cancel", own.to_string()), "no_such_request", "carol's request is none of dave's business");
    // Another approver; the same person on their own request; one who already approved.
    assert_eq!(answer("alice", "approve", pending.to_string()), "allowed");
    assert_eq!(answer("alice", "deny", pending.to_string()), "allowed");
    assert_eq!(answer("carol", "approve", own.to_string()), "own_request");
    assert_eq!(answer("carol", "deny", own.to_string()), "own_request");
    assert_eq!(answer("carol", "cancel", own.to_string()), "allowed");
    assert_eq!(answer("alice", "approve", half.to_string()), "already_approved");
    assert_eq!(answer("alice", "deny", half.to_string()), "allowed");
    // Decided, expired before the sweep, and a disabled viewer.
    assert_eq!(answer("alice", "approve", granted.to_string()), "not_pending");
    assert_eq!(answer("gina", "approve", denied.to_string()), "not_pending");
    assert_eq!(answer("gina", "approve", lapsed.to_string()), "request_expired");
    assert_eq!(answer("frank", "cancel", lapsed.to_string()), "request_expired");
    assert_eq!(answer("bob", "deny", pending.to_string()), "user_disabled");
    // Admin and auditor.
    assert_eq!(answer("root", "approve", pending.to_string()), "not_approver");
    assert_eq!(answer("root", "revoke", granted.grant().to_string()), "allowed");
    assert_eq!(answer("erin", "revoke", granted.grant().to_string()), "may_not_revoke");
    assert_eq!(answer("erin", "cancel", pending.to_string()), "not_requester");
    // Grants: holder, approvers, ended ones, break-glass review (never one's own).
    assert_eq!(answer("carol", "relinquish", granted.grant().to_string()), "allowed");
    assert_eq!(answer("carol", "revoke", granted.grant().to_string()), "allowed", "carol approves export too");
    assert_eq!(answer("alice", "relinquish", granted.grant().to_string()), "not_holder");
    assert_eq!(answer("carol", "relinquish", ran_out.to_string()), "grant_ended");
    assert_eq!(answer("dave", "relinquish", given_up.to_string()), "grant_ended");
    assert_eq!(answer("alice", "review", glass.to_string()), "allowed");
    assert_eq!(answer("dave", "review", glass.to_string()), "not_approver");
    assert_eq!(answer("alice", "review", granted.grant().to_string()), "not_break_glass");
    // Through tokens: a token the requester issued proves nothing of an approval.
    assert_eq!(answer("alice (token of root)", "approve", pending.to_string()), "allowed");
    assert_eq!(answer("alice (token of dave)", "approve", pending.to_string()), "approval_not_accepted");
    assert_eq!(answer("alice (token of dave)", "deny", pending.to_string()), "allowed");
}

/// Whoever may approve a request of yours is every approver but you, and nobody disabled; the
/// refusal of an approval of one's own names the same people.
#[test]
fn the_approvers_for_a_requester_leave_out_the_requester_and_the_disabled() {
    let mut w = World::new();
    let journal_task = &w.policy.tasks["journal"];
    assert_eq!(approvers_for(&w.state, &w.policy, journal_task, "carol"), ["alice", "bob"]);
    assert_eq!(approvers_for(&w.state, &w.policy, journal_task, "dave"), ["alice", "bob", "carol"]);
    w.run("root", Command::DisableUser { user: "bob".into(), reason: None }).unwrap();
    let journal_task = &w.policy.tasks["journal"];
    assert_eq!(approvers_for(&w.state, &w.policy, journal_task, "carol"), ["alice"]);
    let own = journal(&mut w);
    let refusal = w.refused("carol", Command::Approve { request: own, comment: None, signature: None });
    assert!(
        refusal.message.contains("ask another approver of 'journal': alice") && !refusal.message.contains("bob"),
        "{}",
        refusal.message
    );
}

/// A key pair for signed approvals, made here (the agent's part is tested end to end in
/// tests/signed_approvals.rs), and the policy line listing its public half.
fn ssh_pair() -> (ssh_key::PrivateKey, String) {
    let key = ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let line = key.public_key().to_openssh().unwrap();
    (key, line)
}

fn sign(w: &World, key: &ssh_key::PrivateKey, approver: &str, id: RequestId) -> crate::model::SignedApproval {
    let request = &w.state.requests[&id];
    let text = crate::evidence::approval::statement(&request.into(), approver, w.now);
    let sig = key.sign(crate::evidence::approval::NAMESPACE, ssh_key::HashAlg::Sha512, text.as_bytes()).unwrap();
    crate::model::SignedApproval { signed_at: w.now, signature: sig.to_pem(ssh_key::LineEnding::LF).unwrap() }
}

/// `export` (two approvals) with signed approvals, alice's, bob's and carol's keys listed.
fn signed_world() -> (World, ssh_key::PrivateKey, ssh_key::PrivateKey, String) {
    let (alice, alice_line) = ssh_pair();
    let (bob, bob_line) = ssh_pair();
    let (_, carol_line) = ssh_pair();
    let text = POLICY.replace("approvals = 2\n", "approvals = 2\nsigned_approvals = true\n")
        + &format!(
            "[people.alice]\nssh_keys = [\"{alice_line}\"]\n[people.bob]\nssh_keys = [\"{bob_line}\"]\n[people.carol]\nssh_keys = [\"{carol_line}\"]\n"
        );
    let mut w = World::new();
    w.policy = Policy::parse(&text, "test.toml").unwrap();
    (w, alice, bob, text)
}

#[test]
fn a_signed_approval_stops_counting_when_its_key_leaves_the_policy() {
    let (mut w, alice, bob, text) = signed_world();
    let id = w.ask("dave", "export", None, None, Some("INC-1")).unwrap();
    let signed = sign(&w, &alice, "alice", id);
    w.run("alice", Command::Approve { request: id, comment: None, signature: Some(signed) }).unwrap();
    assert_eq!(w.state.requests[&id].approvals[0].signed_with.as_deref().map(|k| k.starts_with("SHA256:")), Some(true));
    // Alice's key is replaced (lost laptop); her earlier approval no longer counts.
    let alice_line = alice.public_key().to_openssh().unwrap();
    let (_, new_line) = ssh_pair();
    w.policy = Policy::parse(&text.replace(&alice_line, &new_line), "test.toml").unwrap();
    let signed = sign(&w, &bob, "bob", id);
    let changes = w.run("bob", Command::Approve { request: id, comment: None, signature: Some(signed) }).unwrap();
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, Change::ApprovalDropped { approver, why, .. } if approver == "alice" && why.contains("no longer lists"))),
        "{changes:?}"
    );
    assert_eq!(w.state.requests[&id].state, RequestState::Pending, "bob's approval alone is one of two");
    // And her old key cannot approve again.
    let old = sign(&w, &alice, "alice", id);
    assert_eq!(w.refused("alice", Command::Approve { request: id, comment: None, signature: Some(old) }).code, "signature_key_unknown");
}

#[test]
fn an_unsigned_approval_stops_counting_when_the_task_starts_taking_only_signed_ones() {
    let (mut w, _alice, bob, text) = signed_world();
    let unsigned = Policy::parse(&text.replace("signed_approvals = true\n", ""), "test.toml").unwrap();
    let signed = std::mem::replace(&mut w.policy, unsigned);
    let id = w.ask("dave", "export", None, None, Some("INC-1")).unwrap();
    w.approve("alice", id).unwrap();
    w.policy = signed;
    let by_bob = sign(&w, &bob, "bob", id);
    let changes = w.run("bob", Command::Approve { request: id, comment: None, signature: Some(by_bob) }).unwrap();
    assert!(changes.iter().any(|c| matches!(c, Change::ApprovalDropped { approver, .. } if approver == "alice")), "{changes:?}");
    assert_eq!(w.state.requests[&id].state, RequestState::Pending);
    // The daemon tells each row's viewer which of their keys to sign with.
    let alice = request_actions(&w.state, &w.policy, &Actor::from("alice"), &w.state.requests[&id], w.now);
    assert_eq!(alice.signing_keys(crate::model::wire::RowAction::Approve).map(|k| k.len()), Some(1));
}

/// `journal` (4h at most) extends with approval up to 6h in all; `restart` (15m) at once up to 30m.
fn extending_world() -> World {
    let text = POLICY
        .replace("default_duration = \"1h\"\n", "default_duration = \"1h\"\nextend = \"approval\"\nmax_total = \"6h\"\n")
        .replace("max_duration = \"15m\"\n", "max_duration = \"15m\"\nextend = \"auto\"\nmax_total = \"30m\"\n");
    let mut w = World::new();
    w.policy = Policy::parse(&text, "test.toml").unwrap();
    w
}

fn extend(w: &mut World, who: &str, grant: GrantId, secs: u64) -> Result<Vec<Change>, Refusal> {
    w.run(who, Command::Extend { grant, by_secs: secs, reason: Some("still at it".into()) })
}

#[test]
fn an_automatic_extension_moves_the_deadline_within_max_total() {
    let mut w = extending_world();
    let id = w.ask("carol", "restart", Some(600), None, None).unwrap();
    let g = id.grant();
    w.advance(300);
    let changes = extend(&mut w, "carol", g, 600).unwrap();
    assert!(matches!(&changes[..], [Change::GrantExtended { extension: None, by_secs: 600, .. }]), "{changes:?}");
    let grant = &w.state.grants[&g];
    assert_eq!(grant.expires_at - grant.granted_at, Duration::seconds(1200));
    assert_eq!(grant.extended_secs, 600);
    // It is the deadline the sweep ends it at, not the old one.
    w.advance(400);
    assert!(w.expire().is_empty(), "the old deadline passed and the grant still runs");
    assert!(w.allowed("carol", "restart"));
    // 20 minutes in all; 30 at most: 10 more, not 15.
    let e = w.refused("carol", Command::Extend { grant: g, by_secs: 900, reason: None });
    assert_eq!(e.code, "extend_too_long");
    assert!(e.message.contains("at most 10m more"), "{}", e.message);
    extend(&mut w, "carol", g, 600).unwrap();
    let e = w.refused("carol", Command::Extend { grant: g, by_secs: 60, reason: None });
    assert!(e.message.contains("cannot be extended: ask for a new grant"), "{}", e.message);
    w.advance(1200);
    assert_eq!(w.expire().len(), 1);
    assert!(!w.allowed("carol", "restart"));
}

#[test]
fn an_extension_by_approval_is_a_request_that_lengthens_the_same_grant() {
    let mut w = extending_world();
    let id = journal(&mut w);
    w.approve("alice", id).unwrap();
    let g = id.grant();
    let before = w.state.grants[&g].expires_at;
    let changes = extend(&mut w, "carol", g, 3600).unwrap();
    let Change::RequestCreated { request: ext, extends: Some(of), duration_secs: 3600, pending_until, .. } = &changes[0] else {
        panic!("{changes:?}")
    };
    assert_eq!((*of, *pending_until), (g, before), "it lapses when the grant would end unextended");
    let ext = *ext;
    assert_eq!(w.state.grants[&g].expires_at, before, "nothing changes before an approver says yes");
    assert_eq!(w.refused("carol", Command::Extend { grant: g, by_secs: 60, reason: None }).code, "already_pending");
    assert_eq!(w.refused("carol", Command::Approve { request: ext, comment: None, signature: None }).code, "own_request");
    let changes = w.approve("bob", ext).unwrap();
    assert!(
        matches!(&changes[1..], [Change::GrantExtended { extension: Some(r), by_secs: 3600, approved_by, .. }, Change::ExtensionApproved { request, .. }] if *r == ext && *request == ext && approved_by == &["bob".to_string()]),
        "{changes:?}"
    );
    assert_eq!(w.state.grants[&g].expires_at, before + Duration::seconds(3600));
    assert_eq!(w.state.requests[&ext].state, RequestState::Approved);
    assert_eq!(w.state.requests[&ext].grant, Some(g));
    assert!(w.state.active.contains(&g) && w.state.grants.len() == 1, "the same grant, no new one");
    // When it ends, memory forgets the extension with it (as a restart would load it).
    w.run("carol", Command::Relinquish { grant: g }).unwrap();
    w.state.forget_ended(&Entity::Grant(g));
    assert!(!w.state.requests.contains_key(&ext) && !w.state.requests.contains_key(&id), "{:?}", w.state.requests.keys());
}

#[test]
fn extensions_are_refused_where_the_policy_or_the_grant_does_not_allow_them() {
    let mut w = extending_world();
    // export: extend = "never" (the default).
    let id = w.ask("carol", "export", None, None, Some("INC-1")).unwrap();
    w.approve("alice", id).unwrap();
    w.approve("bob", id).unwrap();
    let e = w.refused("carol", Command::Extend { grant: id.grant(), by_secs: 60, reason: None });
    assert_eq!(e.code, "not_extendable");
    assert!(e.message.contains("extend = \"never\"") && e.message.contains("zsa request export"), "{}", e.message);
    let j = journal(&mut w);
    w.approve("alice", j).unwrap();
    let e = w.refused("alice", Command::Extend { grant: j.grant(), by_secs: 60, reason: Some("x".into()) });
    assert_eq!(e.code, "not_holder");
    let e = w.refused("carol", Command::Extend { grant: j.grant(), by_secs: 60, reason: None });
    assert_eq!(e.code, "missing_field", "journal needs a reason: {}", e.message);
    // A grant given up cancels the extension it was waiting for.
    let ext = extend(&mut w, "carol", j.grant(), 60).unwrap();
    let Change::RequestCreated { request: ext, .. } = ext[0] else { panic!() };
    let changes = w.run("carol", Command::Relinquish { grant: j.grant() }).unwrap();
    assert!(changes.iter().any(|c| matches!(c, Change::RequestCancelled { request, .. } if *request == ext)), "{changes:?}");
    assert_eq!(w.refused("bob", Command::Approve { request: ext, comment: None, signature: None }).code, "not_pending");
    let e = w.refused("carol", Command::Extend { grant: j.grant(), by_secs: 60, reason: Some("x".into()) });
    assert_eq!(e.code, "grant_ended");
}

#[test]
fn extension_settings_are_checked_in_the_policy() {
    let bad = |from: &str, to: &str| Policy::parse(&POLICY.replacen(from, to, 1), "p.toml").unwrap_err().to_string();
    assert!(bad("default_duration = \"1h\"\n", "default_duration = \"1h\"\nextend = \"sometimes\"\n").contains("extend is 'sometimes'"));
    assert!(
        bad("default_duration = \"1h\"\n", "default_duration = \"1h\"\nextend = \"auto\"\nmax_total = \"1h\"\n")
            .contains("max_total 1h is shorter than max_duration 4h")
    );
    assert!(bad("default_duration = \"1h\"\n", "default_duration = \"1h\"\nmax_total = \"8h\"\n").contains("extend is \"never\""));
    assert!(bad("max_duration = \"15m\"\n", "max_duration = \"15m\"\nextend = \"approval\"\n").contains("needs approvers"));
    let ok = Policy::parse(&POLICY.replace("default_duration = \"1h\"\n", "default_duration = \"1h\"\nextend = \"auto\"\n"), "p").unwrap();
    assert_eq!(ok.tasks["journal"].max_total, 4 * 3600, "max_total defaults to max_duration");
}

#[test]
fn a_request_asked_for_under_signed_approvals_stays_signed_after_a_reload() {
    let (mut w, alice, _bob, text) = signed_world();
    let id = w.ask("dave", "export", None, None, Some("INC-1")).unwrap();
    assert!(w.state.requests[&id].signed_approvals);
    w.policy = Policy::parse(&text.replace("signed_approvals = true\n", ""), "test.toml").unwrap();
    assert_eq!(w.refused("carol", Command::Approve { request: id, comment: None, signature: None }).code, "signature_required");
    let signed = sign(&w, &alice, "alice", id);
    w.run("alice", Command::Approve { request: id, comment: None, signature: Some(signed) }).unwrap();
}

#[test]
fn a_grant_asked_ahead_gives_nothing_before_its_start_and_refusals_say_what_would_do() {
    let mut w = World::new();
    let ahead = |w: &mut World, who: &str, task: &str, secs: i64| {
        let starts_at = Some(w.now + Duration::seconds(secs));
        w.run(who, Command::Request(NewRequest { task: task.into(), reason: Some("window".into()), starts_at, ..Default::default() }))
    };
    let e = ahead(&mut w, "carol", "journal", 0).unwrap_err();
    assert_eq!(e.code, "start_in_past");
    assert!(e.message.contains("leave --at out"), "{}", e.message);
    let e = ahead(&mut w, "carol", "journal", 31 * 86_400).unwrap_err();
    assert_eq!(e.code, "start_too_far");
    assert!(e.message.contains("30d ahead (schedule_ahead in the policy)"), "{}", e.message);
    assert_eq!(ahead(&mut w, "carol", "glass", 60).unwrap_err().code, "break_glass_now");
    // Asked three hours ahead: it lapses at its start if unanswered, or the pending_ttl first.
    let changes = ahead(&mut w, "carol", "journal", 3 * 3600).unwrap();
    let Change::RequestCreated { request: id, pending_until, .. } = changes[0] else { panic!() };
    assert_eq!(pending_until, w.now + Duration::hours(1));
    w.approve("alice", id).unwrap();
    let g = &w.state.grants[&id.grant()];
    assert_eq!((g.granted_at, g.expires_at), (w.now + Duration::hours(3), w.now + Duration::hours(4)));
    assert!(!w.allowed("carol", "journal"));
    let answer = check_access(&w.state, &w.policy, "carol", "carol", "journal", w.now).unwrap();
    assert!(answer.message.starts_with("not yet: carol holds G1"), "{}", answer.message);
    w.advance(3 * 3600);
    assert!(w.allowed("carol", "journal"));
    // Once started it is a grant like any other: cancelling its request is no longer the way.
    assert_eq!(w.refused("carol", Command::Cancel { request: id }).code, "not_pending");
    // An automatic task asked ahead is granted ahead at once.
    let auto = ahead(&mut w, "carol", "restart", 600).unwrap();
    assert!(matches!(&auto[1], Change::GrantStarted { starts_at: Some(_), .. }), "{auto:?}");
}

#[test]
fn windows_refuse_outside_cut_at_the_end_and_bound_extensions() {
    // journal: weekdays 09:00-17:00 UTC, extended at once; 2026-11-23 is a Monday.
    let text = POLICY.replace(
        "default_duration = \"1h\"\n",
        "default_duration = \"1h\"\nextend = \"auto\"\nmax_total = \"8h\"\nwindows = [\"Mon-Fri 09:00-17:00\"]\ntimezone = \"UTC\"\n",
    );
    let mut w = World::new();
    w.policy = Policy::parse(&text, "test.toml").unwrap();
    w.now = Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap();
    let e = w.ask("carol", "journal", Some(3600), Some("r"), None).unwrap_err();
    assert_eq!(e.code, "outside_window");
    assert!(
        e.message
            .contains("the next opens Mon 2026-11-23 09:00 UTC: ask then, or ask ahead: zsa request journal --at 2026-11-23T09:00:00Z"),
        "{}",
        e.message
    );
    // Asked ahead into the window, fine; asked at 16:00 for 4h, cut at 17:00.
    w.now = Utc.with_ymd_and_hms(2026, 11, 23, 16, 0, 0).unwrap();
    let id = journal_for(&mut w, 4 * 3600);
    w.approve("alice", id).unwrap();
    assert_eq!(w.state.grants[&id.grant()].expires_at, Utc.with_ymd_and_hms(2026, 11, 23, 17, 0, 0).unwrap());
    let e = w.refused("carol", Command::Extend { grant: id.grant(), by_secs: 60, reason: Some("r".into()) });
    assert_eq!(e.code, "extend_past_window");
    // A request made in the window and approved after it closed: the approval is refused.
    w.advance(30 * 60);
    let late = w.ask("dave", "journal", Some(600), Some("r"), None).unwrap();
    w.advance(40 * 60);
    assert_eq!(w.refused("alice", Command::Approve { request: late, comment: None, signature: None }).code, "outside_window");
}

fn journal_for(w: &mut World, secs: u64) -> RequestId {
    w.ask("carol", "journal", Some(secs), Some("r"), None).unwrap()
}

/// `export` in two stages: one of the leads (alice, bob), then both of security (carol, gina).
fn staged_world() -> World {
    let text = POLICY
        .replace(
            "name = \"export\"\nrequesters = [\"oncall\"]\napproval = \"manual\"\napprovers = [\"approvers\"]\napprovals = 2\n",
            "name = \"export\"\nrequesters = [\"oncall\"]\napproval = \"manual\"\n",
        )
        .replace(
            "max_duration = \"2h\"\nrequire_ticket = true\n",
            "max_duration = \"2h\"\nrequire_ticket = true\n[[tasks.stages]]\nname = \"lead\"\napprovers = [\"leads\"]\n[[tasks.stages]]\nname = \"security\"\napprovers = [\"security\"]\napprovals = 2\n",
        );
    let text = text.replace(
        "other = [\"frank\", \"gina\"]\n",
        "other = [\"frank\", \"gina\"]\nleads = [\"alice\", \"bob\"]\nsecurity = [\"bob\", \"carol\", \"gina\"]\n",
    );
    let mut w = World::new();
    w.policy = Policy::parse(&text, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    w
}

#[test]
fn stages_are_approved_in_order_by_their_own_approvers_and_nobody_twice() {
    let mut w = staged_world();
    let task = &w.policy.tasks["export"];
    assert_eq!((task.stages.len(), task.approvals), (2, 3));
    let id = w.ask("dave", "export", None, None, Some("INC-1")).unwrap();
    // Security cannot go first.
    let e = w.refused("carol", Command::Approve { request: id, comment: None, signature: None });
    assert_eq!(e.code, "not_this_stage");
    assert!(e.message.contains("at stage 1/2 (lead), which you do not approve; you approve at stage 2 (security)"), "{}", e.message);
    w.approve("bob", id).unwrap();
    assert_eq!(w.state.requests[&id].approvals[0].stage, Some(1));
    let progress = super::decide::stage_progress(&w.policy.tasks["export"], &w.state.requests[&id]).unwrap();
    assert_eq!(progress, "stage 1/2 (lead) done by bob; stage 2/2 (security): 0 of 2");
    // Bob is in security too, but nobody approves at two stages of one request.
    assert_eq!(w.refused("bob", Command::Approve { request: id, comment: None, signature: None }).code, "already_approved");
    assert_eq!(w.refused("alice", Command::Approve { request: id, comment: None, signature: None }).code, "not_this_stage");
    w.approve("carol", id).unwrap();
    assert_eq!(w.state.requests[&id].state, RequestState::Pending);
    let changes = w.approve("gina", id).unwrap();
    assert!(
        matches!(changes.last(), Some(Change::GrantStarted { approved_by, .. }) if approved_by == &["bob", "carol", "gina"]),
        "{changes:?}"
    );
    // A denial at any stage ends it.
    let other = w.ask("carol", "export", None, None, Some("INC-2")).unwrap();
    w.approve("alice", other).unwrap();
    w.run("gina", Command::Deny { request: other, comment: Some("no".into()) }).unwrap();
    assert_eq!(w.state.requests[&other].state, RequestState::Denied);
}

#[test]
fn a_membership_with_an_end_date_ends_what_it_allowed_at_the_sweep() {
    let day = POLICY.replace("oncall = [\"carol\", \"dave\"]", "oncall = [\"carol@2026-11-23\", \"dave\", \"x@example.org\"]");
    let by_day = Policy::parse(&day, "test.toml").unwrap();
    assert_eq!(by_day.memberships.len(), 1, "a name holding '@' but no date is a plain member");
    let midnight = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
    assert_eq!(by_day.next_membership_change(), Some(midnight), "a date means to the end of that day, UTC");
    let text = POLICY.replace("oncall = [\"carol\", \"dave\"]", "oncall = [\"carol@2026-11-23T09:05:00Z\", \"dave\"]");
    let mut w = World::new();
    w.policy = Policy::parse(&text, "test.toml").unwrap();
    let end = Utc.with_ymd_and_hms(2026, 11, 23, 9, 5, 0).unwrap();
    assert_eq!(w.policy.eligible_until("carol", &w.policy.tasks["journal"]), Some(end));
    assert_eq!(w.policy.eligible_until("dave", &w.policy.tasks["journal"]), None);
    let g = w.ask("carol", "restart", Some(900), None, None).unwrap().grant();
    let r = journal(&mut w);
    // Nothing changes before the end; at it, the policy in force drops carol and the sweep ends
    // her grant and request, saying why.
    assert!(eligibility_ended(&w.state, &w.policy.as_of(w.now), w.now).is_empty());
    w.policy = w.policy.as_of(end);
    w.now = end;
    let changes = w.run(SYSTEM_ACTOR, Command::Expire).unwrap();
    assert!(changes.iter().any(|c| matches!(c, Change::RequestCancelled { request, reason: Some(why), .. } if *request == r && why.contains("eligibility ended: membership of oncall"))), "{changes:?}");
    assert!(!w.state.active.contains(&g) || w.state.grants[&g].state != GrantState::Active, "{changes:?}");
    assert!(w.ask("carol", "journal", None, Some("again"), None).is_err());
}

#[test]
fn a_persons_eligible_until_ends_all_their_memberships() {
    let text = format!("{POLICY}[people.carol]\neligible_until = \"2026-11-23T09:05:00Z\"\n");
    let p = Policy::parse(&text, "test.toml").unwrap();
    let end = Utc.with_ymd_and_hms(2026, 11, 23, 9, 5, 0).unwrap();
    // carol is on call and an approver: both end.
    assert_eq!(p.memberships.iter().filter(|m| m.user == "carol" && m.until == Some(end)).count(), 2);
    let later = p.as_of(end);
    assert!(!later.may_request("carol", &later.tasks["journal"]) && !later.may_approve("carol", &later.tasks["journal"]));
    let bad = Policy::parse(&format!("{POLICY}[people.carol]\neligible_until = \"soon\"\n"), "t").unwrap_err().to_string();
    assert!(bad.contains("people.carol.eligible_until: 'soon' is not a date"), "{bad}");
    let bad =
        Policy::parse(&format!("{POLICY}[people.carol]\neligible_from = \"2026-12-01\"\neligible_until = \"2026-11-30T12:00:00Z\"\n"), "t")
            .unwrap_err()
            .to_string();
    assert!(bad.contains("people.carol: eligible_from 2026-12-01 00:00:00 UTC is not before eligible_until"), "{bad}");
}

#[test]
fn a_membership_that_starts_later_holds_only_from_its_start_to_its_end() {
    let text = POLICY.replace(
        "oncall = [\"carol\", \"dave\"]",
        "oncall = [\"carol\", \"dave\", { user = \"hank\", from = \"2026-11-23T10:00:00Z\", until = \"2026-11-23\" }]",
    );
    let file = Policy::parse(&text, "test.toml").unwrap();
    let start = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
    assert!(
        !file.may_request("hank", &file.tasks["restart"]),
        "the file as read holds hank out until his start (hank is in no other group)"
    );
    assert_eq!(file.next_membership_change(), Some(start));
    let mut w = World::new();
    w.policy = file.as_of(w.now);
    assert_eq!(w.policy.eligible_from("hank", &w.policy.tasks["restart"], w.now), Some(start));
    assert!(w.policy.knows("hank", w.now), "a token may be issued ahead of his start (hank is in no other group)");
    let ask = Command::Request(NewRequest { task: "restart".into(), duration_secs: Some(900), ..Default::default() });
    let early = w.refused("hank", ask);
    assert_eq!(early.code, "not_eligible_yet");
    assert!(early.message.contains("your eligibility for 'restart' starts at 2026-11-23T10:00:00+00:00; ask then"), "{}", early.message);
    // From his start (hank is in no other group) he is in, until the end of that day.
    w.now = start;
    w.policy = w.policy.as_of(start);
    assert_eq!(w.policy.eligible_until("hank", &w.policy.tasks["restart"]), Some(end));
    assert_eq!(w.policy.eligible_from("hank", &w.policy.tasks["restart"], w.now), None);
    assert_eq!(w.policy.next_membership_change(), Some(end));
    let g = w.ask("hank", "restart", Some(900), None, None).unwrap().grant();
    // Applied to a policy already moved on, `as_of` answers as it does for the file.
    assert_eq!(w.policy.as_of(end).groups, file.as_of(end).groups);
    assert_eq!(file.as_of(start).groups, w.policy.groups);
    w.policy = w.policy.as_of(end);
    w.now = end;
    let changes = w.run(SYSTEM_ACTOR, Command::Expire).unwrap();
    assert!(!w.state.active.contains(&g) || w.state.grants[&g].state != GrantState::Active, "{changes:?}");
    assert!(w.ask("hank", "restart", Some(900), None, None).is_err());
    assert!(!w.policy.knows("hank", w.now), "nor after his membership ended (found by a review)");
}

#[test]
fn a_dated_member_written_wrong_is_named_with_what_to_write() {
    let with = |member: &str| {
        Policy::parse(&POLICY.replace("oncall = [\"carol\", \"dave\"]", &format!("oncall = [\"carol\", {member}]")), "t")
            .unwrap_err()
            .to_string()
    };
    let e = with("{ user = \"dave\", from = \"tomorrow\" }");
    assert!(e.contains("a member of group 'oncall': from 'tomorrow' is not a date or a time with its offset"), "{e}");
    let e = with("{ user = \"dave\", until = 5 }");
    assert!(e.contains("until is an integer, not a date or a time"), "{e}");
    let e = with("{ user = \"dave\", until = 2026-12-01T10:00:00 }");
    assert!(e.contains("until 2026-12-01T10:00:00 has no offset; say which zone it is in"), "{e}");
    // A TOML date or offset time, unquoted, is read as its quoted form would be.
    let unquoted = POLICY.replace(
        "oncall = [\"carol\", \"dave\"]",
        "oncall = [\"carol\", { user = \"dave\", from = 2026-12-01, until = 2026-12-31T18:00:00Z }]",
    );
    let p = Policy::parse(&unquoted, "t").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.memberships[0].from, Some(Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()));
    assert_eq!(p.memberships[0].until, Some(Utc.with_ymd_and_hms(2026, 12, 31, 18, 0, 0).unwrap()));
    let e = with("{ user = \"dave\", since = \"2026-12-01\" }");
    assert!(e.contains("unknown key 'since'"), "{e}");
    let e = with("{ from = \"2026-12-01\" }");
    assert!(e.contains("a member of group 'oncall' is a table without its user"), "{e}");
    let e = with("{ user = \"dave\", from = \"2026-12-02\", until = \"2026-12-01\" }");
    assert!(e.contains("which is no time at all"), "{e}");
    let e = with("7");
    assert!(e.contains("is neither a name nor a table"), "{e}");
    // The table form without dates is a plain member.
    let p = Policy::parse(&POLICY.replace("oncall = [\"carol\", \"dave\"]", "oncall = [\"carol\", { user = \"dave\" }]"), "t").unwrap();
    assert!(p.memberships.is_empty() && p.may_request("dave", &p.tasks["journal"]));
}

#[test]
fn a_persons_eligible_from_starts_all_their_memberships() {
    let text = format!("{POLICY}[people.carol]\neligible_from = \"2026-11-23T09:30:00Z\"\n");
    let p = Policy::parse(&text, "test.toml").unwrap();
    let start = Utc.with_ymd_and_hms(2026, 11, 23, 9, 30, 0).unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
    let before = p.as_of(now);
    assert!(!before.may_request("carol", &before.tasks["journal"]) && !before.may_approve("carol", &before.tasks["journal"]));
    let after = p.as_of(start);
    assert!(after.may_request("carol", &after.tasks["journal"]) && after.may_approve("carol", &after.tasks["journal"]));
    assert_eq!(after.next_membership_change(), None, "nothing changes after her start");
}

/// From a hostile review: a reload that adds stages must not let an approval given before them
/// stand in for a stage, nor a count fixed at asking decide when stages are done.
#[test]
fn a_reload_that_adds_stages_does_not_let_a_request_skip_one() {
    let mut w = World::new();
    let id = w.ask("dave", "export", None, None, Some("INC-1")).unwrap();
    w.approve("carol", id).unwrap();
    w.policy = staged_world().policy;
    w.run("root", Command::LoadPolicy).unwrap();
    let changes = w.approve("alice", id).unwrap();
    assert!(!changes.iter().any(|c| matches!(c, Change::GrantStarted { .. })), "{changes:?}");
    assert_eq!(w.state.requests[&id].state, RequestState::Pending, "security has not approved");
    // Carol's approval, given at no stage, was dropped on the record (at the reload).
    let r = &w.state.requests[&id];
    assert_eq!(r.approvals.iter().map(|a| (a.by.as_str(), a.stage)).collect::<Vec<_>>(), vec![("alice", Some(1))]);
    assert!(
        w.log
            .iter()
            .any(|e| matches!(&e.change, Change::ApprovalDropped { approver, why, .. } if approver == "carol" && why.contains("no stage")))
    );
}

/// From a hostile review: a stage is judged by the approvals that still hold, so a later stage
/// cannot approve while the earlier stage's only approval is being dropped.
#[test]
fn a_stage_is_judged_by_the_approvals_that_still_hold() {
    let mut w = staged_world();
    let id = w.ask("dave", "export", None, None, Some("INC-1")).unwrap();
    w.approve("bob", id).unwrap();
    // bob leaves both groups (a membership that ended: no event).
    w.policy.groups.get_mut("leads").unwrap().remove("bob");
    w.policy.groups.get_mut("security").unwrap().remove("bob");
    let e = w.refused("carol", Command::Approve { request: id, comment: None, signature: None });
    assert_eq!(e.code, "not_this_stage", "{}", e.message);
    w.approve("alice", id).unwrap();
    let r = &w.state.requests[&id];
    assert_eq!(r.approvals.iter().map(|a| (a.by.as_str(), a.stage)).collect::<Vec<_>>(), vec![("alice", Some(1))]);
}

/// From a hostile review: grants booked ahead cannot be laid over one another, nor start after
/// the asker's eligibility ends.
#[test]
fn a_start_ahead_that_overlaps_a_held_grant_or_outlives_eligibility_is_refused() {
    let text = POLICY.replace("oncall = [\"carol\", \"dave\"]", "oncall = [\"carol@2026-11-23T20:00:00Z\", \"dave\"]");
    let mut w = World::new();
    w.policy = Policy::parse(&text, "test.toml").unwrap();
    let ahead = |w: &mut World, secs: i64| {
        let starts_at = Some(w.now + Duration::seconds(secs));
        w.run("carol", Command::Request(NewRequest { task: "restart".into(), duration_secs: Some(900), starts_at, ..Default::default() }))
    };
    ahead(&mut w, 3600).unwrap();
    assert_eq!(ahead(&mut w, 3600 + 600).unwrap_err().code, "overlaps_grant");
    ahead(&mut w, 3600 + 900).unwrap();
    assert_eq!(ahead(&mut w, 12 * 3600).unwrap_err().code, "start_after_eligibility");
}
