//! Where things live by default. Root gets system paths (/run, /var/lib, /etc); everyone else
//! gets their XDG runtime, state and config directories. Flags and ZSA_* variables override.

use std::path::{Path, PathBuf};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn env_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn home() -> PathBuf {
    env_dir("HOME").unwrap_or_else(|| PathBuf::from("/"))
}

/// The per-user fallback directory in the shared temp dir, used when XDG_RUNTIME_DIR is unset.
pub fn fallback_runtime_dir() -> PathBuf {
    std::env::temp_dir().join(format!("zsa-{}", nix::unistd::geteuid()))
}

/// In a shared directory anyone may create `zsa-UID` first and plant a socket that collects tokens.
/// The fallback is trusted only if it is a directory owned by this user and closed to others.
pub fn check_fallback_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else { return Ok(()) }; // not there: nothing to trust yet
    let me = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} is not a private directory of yours (owner uid {}, mode {:o}); someone may have planted it. \
             Remove it, set XDG_RUNTIME_DIR, or pass --socket",
            dir.display(),
            meta.uid(),
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// The system daemon's socket, root's default.
pub const SYSTEM_SOCKET: &str = "/run/zsa/zsa.sock";

/// Where a client looks when no socket is given: its own daemon's socket (`own`, the default for
/// its account) if one is there, else the system daemon's, so a daemon run by root serves every
/// user. Neither there: both, to say where it looked.
pub fn pick_socket(own: &Path, system: &Path) -> Result<PathBuf, (PathBuf, PathBuf)> {
    for candidate in [own, system] {
        if std::fs::symlink_metadata(candidate).is_ok() {
            return Ok(candidate.to_path_buf());
        }
    }
    Err((own.to_path_buf(), system.to_path_buf()))
}

/// The socket a daemon listens on by default (and a client's first choice).
pub fn default_socket() -> PathBuf {
    if is_root() {
        return PathBuf::from(SYSTEM_SOCKET);
    }
    match env_dir("XDG_RUNTIME_DIR") {
        Some(dir) => dir.join("zsa/zsa.sock"),
        None => fallback_runtime_dir().join("zsa.sock"),
    }
}

pub fn default_state_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/zsa");
    }
    env_dir("XDG_STATE_HOME").unwrap_or_else(|| home().join(".local/state")).join("zsa")
}

pub fn default_policy() -> PathBuf {
    if is_root() {
        return PathBuf::from("/etc/zsa/policy.toml");
    }
    env_dir("XDG_CONFIG_HOME").unwrap_or_else(|| home().join(".config")).join("zsa/policy.toml")
}
