//! The SQL of the reads whose shape depends on the question (an audit query, a scoped listing),
//! built once for every backend: each names its placeholders its own way (`?1`, `$1`).

use super::{EventFilter, Scope};
use crate::model::RequestId;

/// A value bound to a placeholder.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Int(i64),
    Text(String),
}

/// A backend's placeholder for the `n`th value (from 1).
pub type Mark = fn(usize) -> String;

/// A query and the values its placeholders take, in order.
pub struct Query {
    pub sql: String,
    pub args: Vec<Arg>,
    mark: Mark,
}

impl Query {
    fn new(mark: Mark) -> Query {
        Query { sql: String::new(), args: Vec::new(), mark }
    }

    /// Binds `value` and answers its placeholder.
    fn bind(&mut self, value: Arg) -> String {
        self.args.push(value);
        (self.mark)(self.args.len())
    }
}

/// Every row of `table` in `scope`, oldest first; `person` is the column naming whose it is.
pub fn in_scope(mark: Mark, table: &str, person: &str, scope: &Scope) -> Query {
    let mut q = Query::new(mark);
    let mut sql = format!("SELECT body FROM {table}");
    if let Scope::Concerning { user, tasks } = scope {
        let u = q.bind(Arg::Text(user.clone()));
        sql.push_str(&format!(" WHERE {person} = {u}"));
        if !tasks.is_empty() {
            let marks: Vec<String> = tasks.iter().map(|t| q.bind(Arg::Text(t.clone()))).collect();
            sql.push_str(&format!(" OR task IN ({})", marks.join(", ")));
        }
    }
    sql.push_str(" ORDER BY id");
    q.sql = sql;
    q
}

/// Up to `limit` of `requester`'s own requests older than `before` (from the newest when
/// `None`), newest first.
pub fn requests_of(mark: Mark, requester: &str, before: Option<RequestId>, limit: u32) -> Query {
    let mut q = Query::new(mark);
    let before = q.bind(Arg::Int(before.map_or(i64::MAX, |id| id.0 as i64)));
    let requester = q.bind(Arg::Text(requester.to_string()));
    let limit = q.bind(Arg::Int(limit.into()));
    q.sql = format!("SELECT body FROM requests WHERE id < {before} AND requester = {requester} ORDER BY id DESC LIMIT {limit}");
    q
}

/// The events a filter matches (`body, prev_hash, hash`), in seq order; newest first when the
/// filter asks for a tail (the caller turns that page around).
pub fn events(mark: Mark, f: &EventFilter) -> Query {
    let mut q = Query::new(mark);
    let after = q.bind(Arg::Int(f.after_seq.unwrap_or(0) as i64));
    let mut conds = format!("seq > {after}");
    if let Some(since) = &f.since {
        conds.push_str(&format!(" AND at >= {}", q.bind(Arg::Text(super::codec::column_time(since)))));
    }
    if let Some(until) = &f.until {
        conds.push_str(&format!(" AND at < {}", q.bind(Arg::Text(super::codec::column_time(until)))));
    }
    if let Some(user) = &f.user {
        let u = q.bind(Arg::Text(user.clone()));
        conds.push_str(&format!(" AND (subject = {u} OR actor = {u})"));
    }
    if let Some(task) = &f.task {
        conds.push_str(&format!(" AND task = {}", q.bind(Arg::Text(task.clone()))));
    }
    let (order, limit) = match f.tail {
        Some(n) => ("DESC", Some(n.min(f.limit.unwrap_or(u32::MAX)))),
        None => ("", f.limit),
    };
    let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
    q.sql = match &f.visible_to {
        None | Some(Scope::Everything) => format!("SELECT body, prev_hash, hash FROM events WHERE {conds} ORDER BY seq {order}{limit}"),
        Some(Scope::Concerning { user, tasks }) => {
            // One indexed range per way an event may concern the caller, each cut to the page,
            // then merged: a caller who may see nothing reads nothing, and one who sees a little
            // reads a little, however long the log.
            let u = q.bind(Arg::Text(user.clone()));
            let mut ways = vec![format!("actor = {u}"), format!("subject = {u}"), "kind = 'policy_loaded'".to_string()];
            // One range per task (not `task IN`), so each reads in seq order and stops at the
            // page; past SQLite's limit of 500 terms in a compound select, one `IN` instead.
            if tasks.len() <= 400 {
                for t in tasks {
                    ways.push(format!("task = {}", q.bind(Arg::Text(t.clone()))));
                }
            } else {
                let marks: Vec<String> = tasks.iter().map(|t| q.bind(Arg::Text(t.clone()))).collect();
                ways.push(format!("task IN ({})", marks.join(", ")));
            }
            let branches: Vec<String> = ways
                .iter()
                .map(|w| format!("SELECT seq FROM (SELECT seq FROM events WHERE {w} AND {conds} ORDER BY seq {order}{limit}) AS page"))
                .collect();
            format!("SELECT body, prev_hash, hash FROM events WHERE seq IN ({}) ORDER BY seq {order}{limit}", branches.join(" UNION "))
        }
    };
    q
}
