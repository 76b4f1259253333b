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

/// Why no socket was picked.
#[derive(Debug, PartialEq, Eq)]
pub enum NoSocket {
    /// Neither place has one: both, to say where it looked.
    Nowhere(PathBuf, PathBuf),
    /// The user's own place is not to be trusted (`why`), and there is no system daemon either.
    Untrusted(String),
}

/// Where a client looks when no socket is given: its own daemon's socket (`own`, the default for
/// its account) if one is there, else the system daemon's, so a daemon run by root serves every
/// user. If the own place is not to be trusted (`own_problem`: someone planted the per-user
/// directory), it is skipped for the system daemon with a warning (the second value), so a plant
/// cannot keep a user from the system daemon.
pub fn pick_socket(own: &Path, own_problem: Option<String>, system: &Path) -> Result<(PathBuf, Option<String>), NoSocket> {
    let system_there = std::fs::symlink_metadata(system).is_ok();
    match own_problem {
        Some(why) if system_there => {
            Ok((system.to_path_buf(), Some(format!("not using {}: {why}; using the system daemon at {}", own.display(), system.display()))))
        }
        Some(why) => Err(NoSocket::Untrusted(why)),
        None if std::fs::symlink_metadata(own).is_ok() => Ok((own.to_path_buf(), None)),
        None if system_there => Ok((system.to_path_buf(), None)),
        None => Err(NoSocket::Nowhere(own.to_path_buf(), system.to_path_buf())),
    }
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

/// The user's own config file, `$XDG_CONFIG_HOME/zsa/config.toml` (else
/// `$HOME/.config/zsa/config.toml`): the console's keys and colours and the client's contexts.
pub fn user_config_file() -> Option<PathBuf> {
    let base = env_dir("XDG_CONFIG_HOME").or_else(|| env_dir("HOME").map(|h| h.join(".config")))?;
    Some(base.join("zsa").join("config.toml"))
}
