//! The writer's own thread. Every command that changes state (approvals, requests, expiries,
//! the end of a run, policy reloads) runs here, not on tokio's shared blocking pool, so however
//! many reads queue on that pool (thousands of event-stream catch-ups, audit queries), a write
//! never waits behind them.
//!
//! Commands queue as data, not as closures, so the thread can commit them in groups: while one
//! transaction waits for the disk, the commands that arrive queue up, and the next turn takes
//! them all (up to `MAX_BATCH`), decides them in order and writes them in one transaction
//! (`Engine::execute_batch`). A lone command costs what it did before; many concurrent ones
//! share one fsync.

use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::sync::oneshot;

use super::Engine;
use super::engine::{EngineError, Written};
use crate::model::Actor;
use crate::rules::Command;

/// The most commands one transaction carries: enough to amortise an fsync many times over,
/// few enough that the first caller's wait stays short.
pub const MAX_BATCH: usize = 256;

/// What is done with a command's outcome once its transaction is durable (or failed): on the
/// writer's thread, so an answer that reads the store is not one more hand-off.
pub type Answer = Box<dyn FnOnce(&Engine, Result<Written, EngineError>) + Send>;

enum Job {
    /// Writing that is not a command (a reload, saving token use, recording clock jumps): it
    /// runs alone, in its turn.
    Alone(Box<dyn FnOnce() + Send>),
    /// A command: committed with the commands queued right behind it for the same engine.
    Command(Box<Queued>),
}

/// A command on its way to the writer, with what is done with its outcome.
struct Queued {
    engine: Arc<Engine>,
    actor: Actor,
    command: Command,
    answer: Answer,
    /// When it was sent: how long it waited for the writer is a metric.
    queued: Instant,
}

fn queue() -> &'static mpsc::Sender<Job> {
    static QUEUE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new().name("zsa-writer".into()).spawn(move || work(rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the writer thread; writes will fail");
        }
        tx
    })
}

/// The thread's loop: one job or one batch of commands at a time, in the order they came.
fn work(rx: mpsc::Receiver<Job>) {
    let mut next: Option<Job> = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        match job {
            // A job that panics must not take the thread (and every later write) with it; its
            // caller sees the failure through its dropped answer.
            Job::Alone(f) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            }
            Job::Command(first) => {
                let engine = first.engine.clone();
                let (mut commands, mut answers) = (Vec::new(), Vec::new());
                let mut take = |q: Box<Queued>| {
                    super::metrics::waited_for_writer(q.queued.elapsed());
                    commands.push((q.actor, q.command));
                    answers.push(q.answer);
                };
                take(first);
                let mut taken = 1;
                while taken < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(Job::Command(q)) if Arc::ptr_eq(&q.engine, &engine) => {
                            take(q);
                            taken += 1;
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                commit(&engine, commands, answers);
            }
        }
    }
}

/// Decides and writes one batch, then answers each caller. A panic while deciding answers none
/// (each sees its dropped answer); a panic in one answer does not keep the others from theirs.
fn commit(engine: &Engine, commands: Vec<(Actor, Command)>, answers: Vec<Answer>) {
    let Ok(outcomes) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.execute_batch(commands))) else {
        return;
    };
    for (outcome, answer) in outcomes.into_iter().zip(answers) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer(engine, outcome)));
    }
}

/// The job did not finish: its thread could not be started, or it panicked (the log says why).
#[derive(Debug, thiserror::Error)]
#[error("the writer thread failed while recording this; the daemon's log says why")]
pub struct WriterFailed;

/// Runs `f` on the writer thread, alone, and waits for its answer without blocking the async
/// threads.
pub async fn run<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, WriterFailed> {
    let (tx, rx) = oneshot::channel();
    let job = Job::Alone(Box::new(move || {
        let _ = tx.send(f());
    }));
    queue().send(job).map_err(|_| WriterFailed)?;
    rx.await.map_err(|_| WriterFailed)
}

/// Queues `command` for the next batch and waits for what `read` makes of its outcome (run on
/// the writer's thread once the batch is durable), without blocking the async threads.
pub async fn execute<R: Send + 'static>(
    engine: Arc<Engine>,
    actor: Actor,
    command: Command,
    read: impl FnOnce(&Engine, Result<Written, EngineError>) -> R + Send + 'static,
) -> Result<R, WriterFailed> {
    let (tx, rx) = oneshot::channel();
    let answer: Answer = Box::new(move |engine, outcome| {
        let _ = tx.send(read(engine, outcome));
    });
    queue().send(Job::Command(Box::new(Queued { engine, actor, command, answer, queued: Instant::now() }))).map_err(|_| WriterFailed)?;
    rx.await.map_err(|_| WriterFailed)
}

/// Queues `command` and waits until it is durable or refused: the daemon's own bookkeeping (a
/// run's end, a throttled source), which needs no answer beyond that.
pub async fn record(engine: Arc<Engine>, actor: Actor, command: Command) -> Result<Result<(), EngineError>, WriterFailed> {
    execute(engine, actor, command, |_, recorded| recorded.map(|_| ())).await
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::model::SYSTEM_ACTOR;

    fn engine(dir: &std::path::Path) -> Arc<Engine> {
        let store = crate::store::sqlite::SqliteStore::open(&dir.join("zsa.db")).unwrap();
        let policy = crate::policy::Policy::parse("[groups]\nadmins = [\"root\"]\n[roles]\nadmins = [\"admins\"]\n[[tasks]]\nname = \"t\"\nrequesters = [\"admins\"]\napproval = \"auto\"\nmax_duration = \"1h\"\n", "p.toml").unwrap();
        let clock = Arc::new(crate::clock::ManualClock::new(chrono::Utc::now()));
        Arc::new(Engine::open(Box::new(store), policy, clock).unwrap())
    }

    /// A writer loop of the test's own (not the process's shared one, which other tests use),
    /// held by a first job until `release` is sent, so everything sent meanwhile queues up.
    fn held_writer() -> (mpsc::Sender<Job>, mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        held_writer_running(work)
    }

    /// `held_writer`, its thread running `run` (the writer's loop, in some setting of its own).
    fn held_writer_running(
        run: impl FnOnce(mpsc::Receiver<Job>) + Send + 'static,
    ) -> (mpsc::Sender<Job>, mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel();
        let (release, held) = mpsc::channel::<()>();
        tx.send(Job::Alone(Box::new(move || {
            let _ = held.recv();
        })))
        .unwrap();
        (tx, release, std::thread::spawn(move || run(rx)))
    }

    fn token(engine: &Arc<Engine>, n: usize, seen: &Arc<Mutex<Vec<String>>>, label: &str) -> Job {
        let (seen, label) = (seen.clone(), label.to_string());
        let answer: Answer = Box::new(move |_, outcome| {
            assert_eq!(outcome.unwrap().events.len(), 1);
            seen.lock().unwrap().push(label);
        });
        Job::Command(Box::new(Queued {
            engine: engine.clone(),
            actor: SYSTEM_ACTOR.into(),
            command: Command::issue_token("root", format!("{n:064x}")),
            answer,
            queued: Instant::now(),
        }))
    }

    /// Commands queued behind one another for the same engine are written in one transaction;
    /// another engine's command, or a job that is not a command, ends the batch; everything is
    /// done, and answered, in the order it came.
    #[test]
    fn commands_queued_together_are_written_together_in_the_order_they_came() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (one, two) = (engine(a.path()), engine(b.path()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, release, thread) = held_writer();
        tx.send(token(&one, 1, &seen, "one 1")).unwrap();
        tx.send(token(&one, 2, &seen, "one 2")).unwrap();
        tx.send(token(&two, 3, &seen, "two 3")).unwrap();
        let marker = seen.clone();
        tx.send(Job::Alone(Box::new(move || marker.lock().unwrap().push("alone".into())))).unwrap();
        tx.send(token(&one, 4, &seen, "one 4")).unwrap();
        release.send(()).unwrap();
        drop(tx);
        thread.join().unwrap();
        assert_eq!(*seen.lock().unwrap(), ["one 1", "one 2", "two 3", "alone", "one 4"]);
        assert_eq!((one.commits(), two.commits()), (2, 1), "one 1 and one 2 in one transaction");
        assert!(one.verify().unwrap().ok && two.verify().unwrap().ok);
    }

    /// A command queued behind a write under way records how long it waited for the writer
    /// (`zsa_write_wait_seconds`): the time from being sent to being taken into a batch. The
    /// writer loop runs under a recorder of the test's own, so other tests' waits do not count.
    #[test]
    fn a_command_held_behind_a_write_records_how_long_it_waited() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, release, thread) = held_writer_running(move |rx| metrics::with_local_recorder(&recorder, || work(rx)));
        tx.send(token(&engine, 1, &seen, "held")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(80));
        release.send(()).unwrap();
        drop(tx);
        thread.join().unwrap();
        assert_eq!(*seen.lock().unwrap(), ["held"]);
        let text = handle.render();
        let value = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok());
        assert_eq!(value("zsa_write_wait_seconds_count "), Some(1.0), "one command, one wait: {text}");
        let waited = value("zsa_write_wait_seconds_sum ").unwrap();
        assert!((0.08..5.0).contains(&waited), "it waited 80 ms behind the write under way: {waited} s recorded");
    }

    /// However many wait, a transaction carries at most `MAX_BATCH` commands.
    #[test]
    fn a_transaction_carries_at_most_max_batch_commands() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, release, thread) = held_writer();
        for n in 0..MAX_BATCH + 44 {
            tx.send(token(&engine, n, &seen, "t")).unwrap();
        }
        release.send(()).unwrap();
        drop(tx);
        thread.join().unwrap();
        assert_eq!(seen.lock().unwrap().len(), MAX_BATCH + 44, "every one answered");
        assert_eq!(engine.commits(), 2, "{MAX_BATCH}, then 44");
    }
}
