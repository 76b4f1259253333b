//! The writer's own thread. Every command that changes state (approvals, requests, expiries,
//! the end of a run, policy reloads) runs here, not on tokio's shared blocking pool, so however
//! many reads queue on that pool (thousands of event-stream catch-ups, audit queries), a write
//! never waits behind them. Writes are serialised by the engine anyway, so one thread loses
//! nothing.

use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

fn queue() -> &'static mpsc::Sender<Job> {
    static QUEUE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new().name("zsa-writer".into()).spawn(move || {
            for job in rx {
                // A job that panics must not take the thread (and every later write) with it;
                // its caller sees the failure through its dropped answer.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the writer thread; writes will fail");
        }
        tx
    })
}

/// The job did not finish: its thread could not be started, or it panicked (the log says why).
#[derive(Debug, thiserror::Error)]
#[error("the writer thread failed while recording this; the daemon's log says why")]
pub struct WriterFailed;

/// Runs `f` on the writer thread and waits for its answer without blocking the async threads.
pub async fn run<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, WriterFailed> {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    queue().send(job).map_err(|_| WriterFailed)?;
    rx.await.map_err(|_| WriterFailed)
}
