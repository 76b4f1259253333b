//! A PostgreSQL database of a test's own on the machine's server (127.0.0.1:5432, trust
//! authentication), created empty and dropped afterwards, so tests run in parallel. A test that
//! needs it fails, saying why, when the server is not there; only ZSA_TEST_NO_POSTGRES=1 skips it.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Where the machine's PostgreSQL is, and a database on it that always exists.
const SERVER: &str = "postgres://root@127.0.0.1:5432/test";

/// Runs `f` on a thread of its own: the blocking driver refuses to run on a test's async one.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
}

pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    /// A new empty database, or `None` (with a line saying so) when ZSA_TEST_NO_POSTGRES=1.
    pub fn create() -> Option<PgDatabase> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        if std::env::var("ZSA_TEST_NO_POSTGRES").is_ok_and(|v| v == "1") {
            eprintln!("SKIPPED: ZSA_TEST_NO_POSTGRES=1, so this PostgreSQL test did not run");
            return None;
        }
        let name = format!("zsa_t_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        off_runtime(|| {
            let mut server = postgres::Client::connect(SERVER, postgres::NoTls).unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is not reachable at {SERVER} ({e}); the PostgreSQL tests run against it for real. \
                     Start it (it runs on every development and CI machine of this project), or set ZSA_TEST_NO_POSTGRES=1 to skip these tests knowingly"
                )
            });
            server.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
            server.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        });
        Some(PgDatabase { url: format!("postgres://root@127.0.0.1:5432/{name}"), name })
    }

    /// Runs `statement` on this database, as someone with access to it could behind the
    /// daemon's back; answers how many rows it changed.
    pub fn execute(&self, statement: &str) -> u64 {
        off_runtime(|| postgres::Client::connect(&self.url, postgres::NoTls).unwrap().execute(statement, &[]).unwrap())
    }
}

impl PgDatabase {
    /// The first column of the first row `query` answers, as text.
    pub fn text(&self, query: &str) -> String {
        off_runtime(|| postgres::Client::connect(&self.url, postgres::NoTls).unwrap().query_one(query, &[]).unwrap().get(0))
    }

    /// Runs `statements` (several, separated by semicolons) in one session on this database.
    pub fn batch(&self, statements: &str) {
        off_runtime(|| postgres::Client::connect(&self.url, postgres::NoTls).unwrap().batch_execute(statements).unwrap())
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        off_runtime(|| {
            if let Ok(mut server) = postgres::Client::connect(SERVER, postgres::NoTls) {
                let _ = server.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
            }
        });
    }
}
