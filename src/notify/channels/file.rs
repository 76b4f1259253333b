//! Appends each notice as one JSON line to a file: for `zsa demo` and for trying a policy out
//! without a mail server. The file is the daemon's own: created 0600, never reached through a
//! symlink (one planted there could make the daemon append to a file of someone else's choosing),
//! every directory on the way trusted.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fs_trust;
use crate::notify::{DeliveryError, Notice};

pub struct File {
    path: PathBuf,
    timeout: Duration,
}

impl File {
    pub fn new(path: &Path, timeout: Duration) -> File {
        File { path: path.to_path_buf(), timeout }
    }

    pub async fn deliver(&self, notice: &Notice) -> Result<(), DeliveryError> {
        let mut line = serde_json::to_vec(notice).map_err(|e| DeliveryError::Permanent(format!("cannot write the notice as JSON: {e}")))?;
        line.push(b'\n');
        let path = self.path.clone();
        let write = tokio::task::spawn_blocking(move || append(&path, &line));
        match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => Err(DeliveryError::Retry(format!("writing to {} failed: {e}", self.path.display()))),
            Err(_) => Err(DeliveryError::Retry(format!(
                "writing to {} did not finish within {}",
                self.path.display(),
                humantime::format_duration(self.timeout)
            ))),
        }
    }
}

/// One write of the whole line, so lines from concurrent deliveries do not interleave.
fn append(path: &Path, line: &[u8]) -> Result<(), DeliveryError> {
    let role = "the notices file of a file channel";
    // An untrusted place or a planted symlink will not fix itself: permanent.
    let entry = fs_trust::walk(path, false, None, role).map_err(|e| DeliveryError::Permanent(e.to_string()))?;
    let mut file = fs_trust::append_own_file(&entry.path, role).map_err(|e| DeliveryError::Permanent(e.to_string()))?;
    file.write_all(line).map_err(|e| DeliveryError::Retry(format!("cannot append to {}: {e}", path.display())))
}
