//! Prometheus metrics (`GET /metrics`, and `--metrics-listen` on loopback), through the
//! `metrics` crate and its Prometheus exporter. Counters and histograms are recorded where things
//! happen (the engine's commits, the notice sender, the event streams); gauges of the live state
//! are read from memory when scraped, so they are exact. One recorder per process: a process
//! runs one daemon (the demo too).
//!
//! Labels hold only names the policy defines (tasks, channels) or fixed words, never what a
//! caller typed: a request for a task that does not exist is counted under `task="unknown"`.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::Engine;
use crate::model::{Change, Event, POLICY_APPROVER};
use crate::policy::Policy;
use crate::rules::Command;
use crate::store::Rows;

/// Seconds, from a millisecond commit to a day-long wait for an approver.
const BUCKETS: [f64; 16] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0, 3600.0, 86400.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use. Where another recorder was installed first (a
/// program embedding zsa), this one still renders what is recorded through it: nothing.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder =
            PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS).expect("buckets are set");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics shows only the live gauges");
        }
        describe();
        handle
    })
}

/// The `# HELP` of each series.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("zsa_requests_created_total", "Requests asked for, by task");
    describe_counter!("zsa_requests_decided_total", "Requests that ended, by task and outcome (granted, denied, expired, cancelled)");
    describe_counter!("zsa_requests_refused_total", "Requests the rules refused before they existed, by task (unknown: no such task)");
    describe_counter!("zsa_refusals_total", "Commands the rules refused, by refusal code");
    describe_counter!("zsa_store_errors_total", "Commands that failed at the store");
    describe_counter!("zsa_notices_total", "Notice delivery attempts, by channel and outcome (sent, skipped, retry, failed)");
    describe_histogram!("zsa_decision_seconds", metrics::Unit::Seconds, "From a request to an approver's decision, by outcome");
    describe_histogram!("zsa_expiry_lateness_seconds", metrics::Unit::Seconds, "How long after its deadline a grant or request was ended");
    describe_histogram!("zsa_commit_seconds", metrics::Unit::Seconds, "One durable write of events and rows to the store");
    describe_histogram!(
        "zsa_write_wait_seconds",
        metrics::Unit::Seconds,
        "How long a command waited before the writer took it into a batch (behind the writes before it)"
    );
    describe_histogram!(
        "zsa_commit_batch_commands",
        metrics::Unit::Count,
        "Commands whose changes one durable write carried (group commit)"
    );
    describe_gauge!("zsa_event_streams", "Event streams (/v1/events) open now");
    describe_gauge!("zsa_pending_requests", "Requests waiting for a decision now");
    describe_gauge!("zsa_active_grants", "Grants giving access now");
    describe_gauge!("zsa_scheduled_grants", "Grants approved ahead, not started yet");
}

/// Every series of the policy's tasks, and those without labels, at zero: a scrape shows them
/// before anything happened, so a rate or an alert has a series from the start.
pub fn register(policy: &Policy) {
    for task in policy.tasks.keys() {
        metrics::counter!("zsa_requests_created_total", "task" => task.clone()).increment(0);
        metrics::counter!("zsa_requests_refused_total", "task" => task.clone()).increment(0);
        for outcome in ["granted", "denied", "expired", "cancelled"] {
            metrics::counter!("zsa_requests_decided_total", "task" => task.clone(), "outcome" => outcome).increment(0);
        }
    }
    metrics::counter!("zsa_store_errors_total").increment(0);
    metrics::gauge!("zsa_event_streams").increment(0.0);
}

/// A task's name as a label: only names the policy defines.
fn task_label(policy: &Policy, task: &str) -> String {
    if policy.tasks.contains_key(task) { task.to_string() } else { "unknown".to_string() }
}

/// What a committed command changed: requests asked and decided, how long decisions took, how
/// late expiries ran. `rows` are the rows as written (a decided request leaves memory).
pub fn committed(events: &[Arc<Event>], rows: &Rows, policy: &Policy, now: DateTime<Utc>) {
    for e in events {
        match &e.change {
            Change::RequestCreated { task, .. } => {
                metrics::counter!("zsa_requests_created_total", "task" => task_label(policy, task)).increment(1);
            }
            Change::GrantStarted { task, request, approved_by, .. } => {
                metrics::counter!("zsa_requests_decided_total", "task" => task_label(policy, task), "outcome" => "granted").increment(1);
                // Time to a person's decision; an automatic one takes none.
                if approved_by.iter().any(|a| a != POLICY_APPROVER)
                    && let Some(r) = rows.requests.get(request)
                {
                    decision(r.created_at, e.at, "granted");
                }
            }
            Change::RequestDenied { task, request, .. } => {
                metrics::counter!("zsa_requests_decided_total", "task" => task_label(policy, task), "outcome" => "denied").increment(1);
                if let Some(r) = rows.requests.get(request) {
                    decision(r.created_at, e.at, "denied");
                }
            }
            Change::RequestExpired { task, deadline, .. } => {
                metrics::counter!("zsa_requests_decided_total", "task" => task_label(policy, task), "outcome" => "expired").increment(1);
                lateness(*deadline, now, "request");
            }
            Change::RequestCancelled { task, .. } => {
                metrics::counter!("zsa_requests_decided_total", "task" => task_label(policy, task), "outcome" => "cancelled").increment(1);
            }
            // Stamped with its deadline: how much later than that it was ended.
            Change::GrantExpired { .. } => lateness(e.at, now, "grant"),
            _ => {}
        }
    }
}

fn decision(asked: DateTime<Utc>, decided: DateTime<Utc>, outcome: &'static str) {
    let secs = (decided - asked).num_milliseconds().max(0) as f64 / 1000.0;
    metrics::histogram!("zsa_decision_seconds", "outcome" => outcome).record(secs);
}

fn lateness(deadline: DateTime<Utc>, ended: DateTime<Utc>, what: &'static str) {
    let secs = (ended - deadline).num_milliseconds().max(0) as f64 / 1000.0;
    metrics::histogram!("zsa_expiry_lateness_seconds", "what" => what).record(secs);
}

/// A command the rules refused, by its code (a fixed word); a request's by task as well.
pub fn refused(code: &'static str, command: &Command, policy: &Policy) {
    metrics::counter!("zsa_refusals_total", "code" => code).increment(1);
    if let Command::Request(new) = command {
        metrics::counter!("zsa_requests_refused_total", "task" => task_label(policy, &new.task)).increment(1);
    }
}

pub fn store_error() {
    metrics::counter!("zsa_store_errors_total").increment(1);
}

/// One transaction written, holding `commands` commands' changes (group commit).
pub fn commit(took: std::time::Duration, commands: usize) {
    metrics::histogram!("zsa_commit_seconds").record(took.as_secs_f64());
    metrics::histogram!("zsa_commit_batch_commands").record(commands as f64);
}

/// A command was taken into a batch `took` after it was sent: the hand-off to the writer, and
/// the writes queued before it (the writer's pace, usually the disk's, when it grows).
pub fn waited_for_writer(took: std::time::Duration) {
    metrics::histogram!("zsa_write_wait_seconds").record(took.as_secs_f64());
}

pub fn stream_opened() {
    metrics::gauge!("zsa_event_streams").increment(1.0);
}

pub fn stream_closed() {
    metrics::gauge!("zsa_event_streams").decrement(1.0);
}

/// One notice delivery attempt's outcome (`sent`, `skipped`, `retry`, `failed`) on a channel the
/// policy names.
pub fn notice(channel: &str, outcome: &'static str) {
    metrics::counter!("zsa_notices_total", "channel" => channel.to_string(), "outcome" => outcome).increment(1);
}

/// Drains the histograms' buffers now and then, so a daemon nobody scrapes does not keep every
/// sample it ever recorded.
pub async fn keep_up(mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = every.tick() => handle().run_upkeep(),
            _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => return,
        }
    }
}

/// The exposition: the live gauges read now, with everything recorded.
pub fn render(engine: &Engine) -> String {
    let handle = handle();
    let (pending, active, scheduled) = engine.read(|s, _| {
        let now = engine.now();
        let live: Vec<_> = s.active.iter().filter_map(|g| s.grants.get(g)).filter(|g| g.is_live_at(now)).collect();
        (s.pending.len(), live.iter().filter(|g| g.is_active_at(now)).count(), live.iter().filter(|g| g.is_scheduled_at(now)).count())
    });
    metrics::gauge!("zsa_pending_requests").set(pending as f64);
    metrics::gauge!("zsa_active_grants").set(active as f64);
    metrics::gauge!("zsa_scheduled_grants").set(scheduled as f64);
    handle.render()
}
