//! A program of the operator's (a pager gateway, the PagerDuty CLI): run directly (an absolute
//! path and its arguments, no shell), the notice as JSON on standard input, a clean environment,
//! in its own process group so that on timeout it is killed with everything it started.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::first_line;
use crate::notify::{DeliveryError, Notice};

/// The environment the program gets, and nothing of the daemon's (which may hold secrets).
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How much of the program's standard error is kept to say why it failed.
const STDERR_BYTES: u64 = 4096;

pub struct Exec {
    program: PathBuf,
    args: Vec<String>,
    timeout: Duration,
}

impl Exec {
    pub fn new(program: &Path, args: Vec<String>, timeout: Duration) -> Result<Exec, String> {
        if !program.is_absolute() {
            return Err(format!(
                "program = {:?} is not an absolute path; zsa runs it without a shell or a search path, so write it whole (e.g. /usr/local/bin/page)",
                program.display()
            ));
        }
        Ok(Exec { program: program.to_path_buf(), args, timeout })
    }

    pub async fn deliver(&self, notice: &Notice) -> Result<(), DeliveryError> {
        let shown = self.program.display();
        let input = serde_json::to_vec(notice)
            .map_err(|e| DeliveryError::Permanent(format!("cannot write notice {} as JSON: {e}", first_line(&notice.key))))?;
        let mut child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .env_clear()
            .env("PATH", PATH)
            .env("ZSA_DELIVERY", &notice.key)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    DeliveryError::Permanent(format!("cannot run {shown}: {e}; check the program of this channel"))
                }
                _ => DeliveryError::Retry(format!("cannot run {shown}: {e}")),
            })?;
        let group = child.id().map(|pid| nix::unistd::Pid::from_raw(pid as i32));
        let stdin = child.stdin.take();
        let stderr = child.stderr.take();
        let run = async {
            let feed = async move {
                if let Some(mut pipe) = stdin {
                    // A program that exits without reading closes the pipe: its exit status says
                    // how it went, not the broken pipe.
                    let _ = pipe.write_all(&input).await;
                }
            };
            let said = async move {
                let mut said = Vec::new();
                if let Some(pipe) = stderr {
                    let _ = pipe.take(STDERR_BYTES).read_to_end(&mut said).await;
                }
                said
            };
            let ((), said, status) = tokio::join!(feed, said, child.wait());
            (said, status)
        };
        let (said, status) = match tokio::time::timeout(self.timeout, run).await {
            Ok(done) => done,
            Err(_) => {
                if let Some(group) = group {
                    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
                }
                return Err(DeliveryError::Retry(format!(
                    "{shown} did not finish within {} and was killed",
                    humantime::format_duration(self.timeout)
                )));
            }
        };
        let status = status.map_err(|e| DeliveryError::Retry(format!("cannot wait for {shown}: {e}")))?;
        if status.success() {
            return Ok(());
        }
        let why = first_line(&String::from_utf8_lossy(&said));
        let how = match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => "was killed by a signal".to_string(),
        };
        Err(DeliveryError::Retry(if why.is_empty() { format!("{shown} {how}") } else { format!("{shown} {how}: {why}") }))
    }
}
