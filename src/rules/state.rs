//! Current state, derived from events by `apply`. Nothing else ever changes it, so replaying the
//! log always rebuilds exactly the same state.
//!
//! The daemon keeps only what is live in memory (pending requests, active grants and their
//! requests, running runs, every token and disabled user) so that starting takes time in
//! proportion to what is open, not to history. The maps are a cache that holds at least that:
//! before deciding, the engine `admit`s from the store the one ended entity a command names, and
//! afterwards `forget_ended` drops whatever is no longer live. The index sets say what is live.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::model::{
    Approval, Change, Event, Grant, GrantEnd, GrantId, GrantState, Request, RequestId, RequestState, Review, Run, RunEnd, RunId, Token,
    TokenId,
};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub requests: BTreeMap<RequestId, Request>,
    pub grants: BTreeMap<GrantId, Grant>,
    pub tokens: BTreeMap<TokenId, Token>,
    pub runs: BTreeMap<RunId, Run>,
    /// Runs started and not yet ended.
    pub running: BTreeSet<RunId>,
    pub token_by_hash: BTreeMap<String, TokenId>,
    /// Disabled users and when they were disabled.
    pub disabled: BTreeMap<String, DateTime<Utc>>,
    /// Indexes of what is still open, so deadlines and queues never scan history.
    pub pending: BTreeSet<RequestId>,
    pub active: BTreeSet<GrantId>,
    /// What is open, by the moment it ends by itself: the deadline task and `Expire` look at the
    /// front, never at everything (requests before grants at the same instant, then by id).
    pub deadlines: BTreeSet<(DateTime<Utc>, Deadline)>,
    /// Active grants by (holder, task), so `check` looks at the caller's grants only.
    pub held: BTreeSet<(String, String, GrantId)>,
    /// The highest ids ever given, so new ids never repeat once history has left memory.
    pub last_request: u64,
    pub last_run: u64,
    pub last_seq: u64,
    pub last_hash: String,
}

/// Something that ends by itself at a deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Deadline {
    Request(RequestId),
    Grant(GrantId),
}

/// Something a command or an event is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entity {
    Request(RequestId),
    Grant(GrantId),
    Run(RunId),
    Token(TokenId),
    User(String),
}

impl Entity {
    /// The existing entity an event changes (none for events that create something).
    pub fn changed_by(change: &Change) -> Option<Entity> {
        match change {
            Change::RequestApproved { request, .. }
            | Change::ApprovalDropped { request, .. }
            | Change::RequestDenied { request, .. }
            | Change::RequestCancelled { request, .. }
            | Change::RequestExpired { request, .. }
            | Change::GrantStarted { request, .. } => Some(Entity::Request(*request)),
            Change::GrantExtended { grant, .. } => Some(Entity::Grant(*grant)),
            Change::ExtensionApproved { request, .. } => Some(Entity::Request(*request)),
            Change::GrantExpired { grant, .. }
            | Change::GrantRevoked { grant, .. }
            | Change::GrantRelinquished { grant, .. }
            | Change::GrantReviewed { grant, .. } => Some(Entity::Grant(*grant)),
            Change::TokenRevoked { token, .. } => Some(Entity::Token(*token)),
            Change::UserDisabled { user, .. } | Change::UserEnabled { user } => Some(Entity::User(user.clone())),
            Change::RunEnded { run, .. } => Some(Entity::Run(*run)),
            Change::PolicyLoaded { .. }
            | Change::StateRebuilt { .. }
            | Change::ClockJumped { .. }
            | Change::RequestCreated { .. }
            | Change::TokenIssued { .. }
            | Change::RunStarted { .. }
            | Change::NoticeFailed { .. }
            | Change::NoticeRetried { .. }
            | Change::AuthThrottled { .. }
            | Change::Checkpoint { .. } => None,
        }
    }
}

impl State {
    pub fn next_request_id(&self) -> RequestId {
        RequestId(self.last_request + 1)
    }

    pub fn next_run_id(&self) -> RunId {
        RunId(self.last_run + 1)
    }

    pub fn next_token_id(&self) -> TokenId {
        TokenId(self.tokens.keys().next_back().map_or(1, |id| id.0 + 1))
    }

    pub fn is_disabled(&self, user: &str) -> bool {
        self.disabled.contains_key(user)
    }

    /// The token with this hash, revoked or not.
    pub fn token_by_sha256(&self, sha256: &str) -> Option<&Token> {
        self.token_by_hash.get(sha256).and_then(|id| self.tokens.get(id))
    }

    /// The user a presented token's hash belongs to, if it is known and not revoked.
    pub fn token_user(&self, sha256: &str) -> Option<&Token> {
        self.token_by_hash.get(sha256).and_then(|id| self.tokens.get(id)).filter(|t| !t.revoked)
    }

    /// The earliest moment something must end by itself: a pending request or an active grant.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// The active grants `user` holds for `task` (those whose deadline may still have passed).
    pub fn held_by<'a>(&'a self, user: &str, task: &str) -> impl Iterator<Item = &'a Grant> + 'a {
        let from = (user.to_string(), task.to_string(), GrantId(0));
        let to = (user.to_string(), task.to_string(), GrantId(u64::MAX));
        self.held.range(from..=to).filter_map(|(_, _, id)| self.grants.get(id))
    }

    /// Adds a pending request with its indexes: `apply` on `request_created`, and the store
    /// loading live state.
    pub fn add_pending(&mut self, r: Request) {
        self.pending.insert(r.id);
        self.deadlines.insert((r.pending_until, Deadline::Request(r.id)));
        self.requests.insert(r.id, r);
    }

    /// Adds an active grant with its indexes: `apply` on `grant_started`, and the store loading
    /// live state.
    pub fn add_active(&mut self, g: Grant) {
        self.active.insert(g.id);
        self.deadlines.insert((g.expires_at, Deadline::Grant(g.id)));
        self.held.insert((g.holder.clone(), g.task.clone(), g.id));
        self.grants.insert(g.id, g);
    }

    /// A copy of just the entities `changes` will touch, so they can be changed and written to
    /// disk before the shared state is.
    pub fn touched_by(&self, changes: &[Change]) -> State {
        let mut out = State { last_seq: self.last_seq, last_hash: self.last_hash.clone(), ..State::default() };
        for entity in changes.iter().filter_map(Entity::changed_by) {
            match entity {
                Entity::Request(id) => {
                    if let Some(r) = self.requests.get(&id) {
                        out.requests.insert(id, r.clone());
                    }
                }
                Entity::Grant(id) => {
                    if let Some(g) = self.grants.get(&id) {
                        out.grants.insert(id, g.clone());
                    }
                }
                Entity::Token(id) => {
                    if let Some(t) = self.tokens.get(&id) {
                        out.tokens.insert(id, t.clone());
                    }
                }
                Entity::User(user) => {
                    if let Some(at) = self.disabled.get(&user) {
                        out.disabled.insert(user, *at);
                    }
                }
                Entity::Run(id) => {
                    if let Some(r) = self.runs.get(&id) {
                        out.runs.insert(id, r.clone());
                    }
                }
            }
        }
        out
    }

    /// Is this request still needed in memory: pending, or the request an active grant was
    /// given for (whose parameters a run uses)? Not an approved extension of one: it is ended,
    /// and a store loads only the grant's own request.
    fn request_live(&self, id: RequestId) -> bool {
        self.pending.contains(&id)
            || self
                .requests
                .get(&id)
                .and_then(|r| r.grant)
                .is_some_and(|g| self.active.contains(&g) && self.grants.get(&g).is_some_and(|g| g.request == id))
    }

    /// Puts an entity read from the store into the cache, so a decision can see it.
    pub fn admit_request(&mut self, r: Request) {
        self.requests.entry(r.id).or_insert(r);
    }

    pub fn admit_grant(&mut self, g: Grant) {
        self.grants.entry(g.id).or_insert(g);
    }

    pub fn admit_run(&mut self, r: Run) {
        self.runs.entry(r.id).or_insert(r);
    }

    /// Drops `entity` from memory if it is no longer live (a grant takes its request with it).
    pub fn forget_ended(&mut self, entity: &Entity) {
        match entity {
            Entity::Request(id) => {
                if !self.request_live(*id) {
                    self.requests.remove(id);
                }
            }
            Entity::Grant(id) => {
                if !self.active.contains(id)
                    && let Some(g) = self.grants.remove(id)
                {
                    // Its request, and the extension requests approved into it, go with it.
                    let extensions: Vec<RequestId> = self.requests.values().filter(|r| r.extends == Some(*id)).map(|r| r.id).collect();
                    for r in std::iter::once(g.request).chain(extensions) {
                        if !self.request_live(r) {
                            self.requests.remove(&r);
                        }
                    }
                }
            }
            Entity::Run(id) => {
                if !self.running.contains(id) {
                    self.runs.remove(id);
                }
            }
            Entity::Token(_) | Entity::User(_) => {}
        }
    }

    /// Only what is live: what the daemon keeps in memory, and what a store loads at start.
    pub fn live(&self) -> State {
        let mut out = self.clone();
        let ended: Vec<Entity> = (self.requests.keys().map(|id| Entity::Request(*id)))
            .chain(self.grants.keys().map(|id| Entity::Grant(*id)))
            .chain(self.runs.keys().map(|id| Entity::Run(*id)))
            .collect();
        for e in &ended {
            out.forget_ended(e);
        }
        out
    }

    /// Applies one recorded event. Events were decided against the state before them, so
    /// applying never fails; an event naming something unknown is skipped.
    pub fn apply(&mut self, event: &Event) {
        let at = event.at;
        let actor = &event.actor;
        match &event.change {
            Change::PolicyLoaded { .. }
            | Change::StateRebuilt { .. }
            | Change::ClockJumped { .. }
            | Change::NoticeFailed { .. }
            | Change::NoticeRetried { .. }
            | Change::AuthThrottled { .. }
            | Change::Checkpoint { .. } => {}
            Change::RequestCreated { request, .. } => {
                if let Some(r) = Request::created(&event.change, at) {
                    self.add_pending(r);
                }
                self.last_request = self.last_request.max(request.0);
            }
            Change::RequestApproved { request, comment, signature, stage, .. } => {
                if let Some(r) = self.requests.get_mut(request) {
                    let signed_with = signature.as_ref().map(|s| s.key.clone());
                    let auth = event.auth.clone();
                    r.approvals.push(Approval { by: actor.clone(), at, auth, comment: comment.clone(), signed_with, stage: *stage });
                }
            }
            Change::ApprovalDropped { request, approver, .. } => {
                if let Some(r) = self.requests.get_mut(request) {
                    r.approvals.retain(|a| a.by != *approver);
                }
            }
            Change::RequestDenied { request, comment, .. } => {
                self.close_request(*request, RequestState::Denied, at, actor, Some(comment.clone()));
            }
            Change::RequestCancelled { request, reason, .. } => {
                self.close_request(*request, RequestState::Cancelled, at, actor, reason.clone());
            }
            Change::RequestExpired { request, deadline, .. } => {
                self.close_request(*request, RequestState::Expired, *deadline, actor, None);
            }
            Change::GrantStarted { grant, request, task, holder, starts_at, expires_at, approved_by, break_glass } => {
                self.close_request(*request, RequestState::Approved, at, actor, None);
                if let Some(r) = self.requests.get_mut(request) {
                    r.grant = Some(*grant);
                }
                self.add_active(Grant {
                    id: *grant,
                    request: *request,
                    task: task.clone(),
                    holder: holder.clone(),
                    state: GrantState::Active,
                    granted_at: starts_at.unwrap_or(at),
                    expires_at: *expires_at,
                    approved_by: approved_by.clone(),
                    break_glass: *break_glass,
                    review: None,
                    ended: None,
                    extended_secs: 0,
                });
            }
            Change::ExtensionApproved { request, grant, .. } => {
                self.close_request(*request, RequestState::Approved, at, actor, None);
                if let Some(r) = self.requests.get_mut(request) {
                    r.grant = Some(*grant);
                }
            }
            Change::GrantExtended { grant, by_secs, expires_at, .. } => {
                if let Some(g) = self.grants.get_mut(grant) {
                    if self.deadlines.remove(&(g.expires_at, Deadline::Grant(*grant))) {
                        self.deadlines.insert((*expires_at, Deadline::Grant(*grant)));
                    }
                    g.expires_at = *expires_at;
                    g.extended_secs += by_secs;
                }
            }
            Change::GrantExpired { grant, deadline, .. } => {
                self.end_grant(*grant, GrantState::Expired, GrantEnd { at: *deadline, by: actor.clone(), reason: None });
            }
            Change::GrantRevoked { grant, reason, .. } => {
                self.end_grant(*grant, GrantState::Revoked, GrantEnd { at, by: actor.clone(), reason: Some(reason.clone()) });
            }
            Change::GrantRelinquished { grant, .. } => {
                self.end_grant(*grant, GrantState::Relinquished, GrantEnd { at, by: actor.clone(), reason: None });
            }
            Change::GrantReviewed { grant, comment, .. } => {
                if let Some(g) = self.grants.get_mut(grant) {
                    g.review = Some(Review { by: actor.clone(), at, comment: comment.clone() });
                }
            }
            Change::TokenIssued { token, user, sha256, expires_at, scope } => {
                self.tokens.insert(
                    *token,
                    Token {
                        id: *token,
                        user: user.clone(),
                        sha256: sha256.clone(),
                        issued_at: at,
                        issued_by: actor.clone(),
                        revoked: false,
                        expires_at: *expires_at,
                        scope: *scope,
                    },
                );
                self.token_by_hash.insert(sha256.clone(), *token);
            }
            Change::TokenRevoked { token, .. } => {
                if let Some(t) = self.tokens.get_mut(token) {
                    t.revoked = true;
                }
            }
            Change::UserDisabled { user, .. } => {
                self.disabled.insert(user.clone(), at);
            }
            Change::UserEnabled { user } => {
                self.disabled.remove(user);
            }
            Change::RunStarted { run, grant, task, holder, argv, run_as, daemon, .. } => {
                self.runs.insert(
                    *run,
                    Run {
                        id: *run,
                        grant: *grant,
                        task: task.clone(),
                        holder: holder.clone(),
                        argv: argv.clone(),
                        run_as: run_as.clone(),
                        started_at: at,
                        ended: None,
                        daemon: daemon.clone(),
                    },
                );
                self.running.insert(*run);
                self.last_run = self.last_run.max(run.0);
            }
            Change::RunEnded { run, outcome, exit_code, transcript_bytes, transcript_sha256, transcript_cap, truncated, .. } => {
                if let Some(r) = self.runs.get_mut(run) {
                    r.ended = Some(RunEnd {
                        at,
                        outcome: *outcome,
                        exit_code: *exit_code,
                        transcript_bytes: *transcript_bytes,
                        transcript_sha256: transcript_sha256.clone(),
                        transcript_cap: *transcript_cap,
                        truncated: *truncated,
                    });
                }
                self.running.remove(run);
            }
        }
        self.last_seq = event.seq;
        self.last_hash = event.hash.clone();
    }

    fn close_request(&mut self, id: RequestId, to: RequestState, at: DateTime<Utc>, by: &str, comment: Option<String>) {
        if let Some(r) = self.requests.get_mut(&id) {
            self.deadlines.remove(&(r.pending_until, Deadline::Request(id)));
            r.state = to;
            r.decided_at = Some(at);
            r.decided_by = Some(by.to_string());
            if comment.is_some() {
                r.comment = comment;
            }
        }
        self.pending.remove(&id);
    }

    fn end_grant(&mut self, id: GrantId, to: GrantState, end: GrantEnd) {
        if let Some(g) = self.grants.get_mut(&id) {
            self.deadlines.remove(&(g.expires_at, Deadline::Grant(id)));
            self.held.remove(&(g.holder.clone(), g.task.clone(), id));
            g.state = to;
            g.ended = Some(end);
        }
        self.active.remove(&id);
    }
}
